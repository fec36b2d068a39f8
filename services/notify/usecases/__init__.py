"""The notify service's use cases, one module a job: notices (results and binding events into
SMS, the ending-soon check), replies (the SMS uplink), directory (contacts, institutions, bindings
in force), deliveries (sending, recording, release after quiet hours); service builds them."""

from services.notify.usecases.deliveries import Deliveries, delivery, message_id_for, outcome_event
from services.notify.usecases.directory import Directory, short_masked_name
from services.notify.usecases.notices import ENDING_WITHIN_DAYS, Notices, source_day
from services.notify.usecases.replies import (SMS_COMMAND_PREFIX, Replies, dispute_command, dispute_command_id,
                                              help_message_id)
from services.notify.usecases.service import NotifyService

__all__ = ["Deliveries", "Directory", "ENDING_WITHIN_DAYS", "Notices", "NotifyService", "Replies",
           "SMS_COMMAND_PREFIX", "delivery", "dispute_command", "dispute_command_id", "help_message_id",
           "message_id_for", "outcome_event", "short_masked_name", "source_day"]
