"""The platform's clock (shared.clock, CLOCK_OFFSET_SECONDS): a test or a drill moves every China
date the platform decides with, and nothing that partners set in real time. That each service
applies it at start is shown through the broker by tests/integration/test_china_midnight.py."""

import base64
from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError

from shared import clock, envelope
from shared.clock import MAX_OFFSET_SECONDS
from shared.settings import ClockSettings
from shared.signing import PartnerKey, SignatureRefused, Signer, SigningKey, verify


@pytest.fixture(autouse=True)
def host_clock():
    """Each test starts, and leaves the process, on the host's clock."""
    clock.set_offset(0)
    yield
    clock.set_offset(0)


def test_the_platform_clock_is_the_host_clock_unless_set():
    assert ClockSettings().clock_offset_seconds == 0
    assert abs(envelope.now() - datetime.now(envelope.CHINA_TZ)) < timedelta(seconds=5)


def test_an_offset_moves_the_platform_clock_and_the_china_day_with_it():
    clock.set_offset(86_400 * 3 + 60)
    moved = envelope.now() - datetime.now(envelope.CHINA_TZ)
    assert timedelta(days=3, seconds=55) < moved < timedelta(days=3, seconds=65)
    assert envelope.china_today() == envelope.now().date()
    assert envelope.now().utcoffset() == timedelta(hours=8)


def test_the_setting_is_read_from_the_environment_and_applied_only_when_asked(monkeypatch):
    monkeypatch.setenv("CLOCK_OFFSET_SECONDS", "-7200")
    settings = ClockSettings()
    assert settings.clock_offset_seconds == -7200
    assert clock.offset() == timedelta(0)  # reading the settings moves nothing
    settings.apply_clock()
    assert clock.offset() == timedelta(hours=-2)


@pytest.mark.parametrize("seconds", [MAX_OFFSET_SECONDS + 1, -MAX_OFFSET_SECONDS - 1, 1_700_000_000_000])
def test_an_offset_beyond_four_hundred_days_is_refused(seconds):
    with pytest.raises(ValidationError, match="clock_offset_seconds"):
        ClockSettings(clock_offset_seconds=seconds)
    with pytest.raises(ValueError, match="at most"):
        clock.set_offset(seconds)
    assert clock.offset() == timedelta(0)


def _key_ring(key: SigningKey, not_before: datetime, not_after: datetime):
    known = PartnerKey(key.key_id, "bureau", base64.b64decode(key.public_b64), not_before, not_after, region="610100")
    return {key.key_id: known}.get


def test_signing_keys_stay_valid_in_real_time_whatever_the_platform_clock_says():
    key = SigningKey.generate("bureau:610100:k1")
    real = datetime.now(envelope.CHINA_TZ)
    find = _key_ring(key, real - timedelta(hours=1), real + timedelta(hours=1))
    headers = key.headers("bureau.accounts", b"p", b"v")
    for days in (30, -30):
        clock.set_offset(days * 86_400)
        assert verify("bureau.accounts", b"p", b"v", headers, find, envelope.now()) == \
            Signer("bureau:610100:k1", "bureau", "610100")


def test_a_key_valid_only_at_the_moved_time_is_not_believed():
    key = SigningKey.generate("bureau:610100:k1")
    clock.set_offset(30 * 86_400)
    moved = envelope.now()
    find = _key_ring(key, moved - timedelta(hours=1), moved + timedelta(hours=1))
    headers = key.headers("bureau.accounts", b"p", b"v")
    assert verify("bureau.accounts", b"p", b"v", headers, find, moved) is SignatureRefused.UNKNOWN_SIGNER
