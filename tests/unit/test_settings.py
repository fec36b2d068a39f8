"""Every idempotency record outlives the topics' retention: a service refuses to start otherwise."""

import pytest
from pydantic import ValidationError

from services.binding.config import BindingSettings
from services.notify.config import NotifySettings
from services.settlement.config import SettlementSettings

# The binding service refuses to start without its name-digest key (no published default).
REQUIRED = {BindingSettings: {"name_digest_key": "k" * 32}}


def made(settings, **values):
    return settings(**REQUIRED.get(settings, {}), **values)


@pytest.mark.parametrize("settings,ttl", [(BindingSettings, "binding_outcome_ttl_days"),
                                          (SettlementSettings, "settlement_record_ttl_days"),
                                          (SettlementSettings, "settlement_rejection_ttl_days"),
                                          (NotifySettings, "notify_record_ttl_days")])
def test_a_record_ttl_shorter_than_the_retention_is_refused(settings, ttl):
    made(settings, **{ttl: 30, "kafka_retention_days": 30})
    with pytest.raises(ValidationError, match="shorter than KAFKA_RETENTION_DAYS"):
        made(settings, **{ttl: 29, "kafka_retention_days": 30})


def test_the_defaults_hold_together():
    for settings in (made(BindingSettings), SettlementSettings(), NotifySettings()):
        assert settings.kafka_retention_days == 30
    assert NotifySettings().notify_record_ttl_days >= SettlementSettings().settlement_record_ttl_days
