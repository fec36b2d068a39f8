"""Settings of the binding service (environment variables, listed in the README)."""

from pydantic import Field

from shared.settings import ServiceSettings


class BindingSettings(ServiceSettings):
    binding_group_id: str = Field("binding", description="Consumer group of the binding service.")
    binding_outcome_ttl_days: int = Field(
        90, ge=1, description="How long a command's recorded outcome is kept to answer redeliveries the same way."
    )
