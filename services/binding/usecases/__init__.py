"""The binding service's use cases, one module a job: commands (binding.commands), queries,
disputes (a bureau's decisions), payments (the payment projection), people (the registry),
sweeps (the payer index); outcomes holds what they share, service builds them from settings."""

from services.binding.usecases.commands import Commands
from services.binding.usecases.outcomes import binding_id_for
from services.binding.usecases.payments import grantor_payments, grantor_refunds
from services.binding.usecases.queries import MAX_LISTED_DISPUTES
from services.binding.usecases.service import BindingService

__all__ = ["BindingService", "Commands", "MAX_LISTED_DISPUTES", "binding_id_for", "grantor_payments",
           "grantor_refunds"]
