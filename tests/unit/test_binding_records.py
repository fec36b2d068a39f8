"""How the binding service keeps a refused command's answer (contract version 3: anyone can
cause a refusal, so each costs a field in a shared hash, not a key of its own). No Redis."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.binding.storage.bindings import (REFUSAL_BUCKETS, BindingStore, Plan, Recorded, _decode_refusal,
                                               _encode_refusal, refusal_field, refusal_key)

DAY = 86_400
TTL = 90 * DAY


def test_a_uuid_command_id_is_kept_in_its_sixteen_bytes_and_any_other_id_as_it_is():
    cid = str(uuid.uuid4())
    assert refusal_field(cid) == uuid.UUID(cid).bytes
    # uuid.UUID reads these too, but they are other ids than the canonical one: kept as they are
    for other in (cid.upper(), cid.replace("-", ""), "{" + cid + "}", "urn:uuid:" + cid, "cmd-1"):
        assert refusal_field(other) == other.encode()


@settings(database=None, deadline=None)
@given(st.lists(st.one_of(st.uuids().map(str), st.text(min_size=1, max_size=128)), min_size=2, max_size=50,
                unique=True))
def test_no_two_command_ids_share_a_field(ids):
    assert len({refusal_field(i) for i in ids}) == len(ids)


def test_a_refusal_reads_back_as_recorded():
    r = Recorded("BindingRejected", 1_780_000_000, b"610102199001011234", "UNKNOWN_PERSON|grantor: a|b")
    assert _decode_refusal(_encode_refusal(r).encode()) == r
    assert _decode_refusal(_encode_refusal(Recorded("BindingRejected", 1, None, "INVALID_COMMAND|")).encode()).key is None


def test_refusals_spread_over_the_buckets_of_their_generation():
    keys = {refusal_key(str(uuid.uuid4()), 7) for _ in range(20_000)}
    assert all(k.startswith("bnd:rej:7:") for k in keys) and len(keys) == REFUSAL_BUCKETS


@pytest.mark.parametrize("written", [0, 1, TTL // 2, TTL - 1, 5 * TTL + 3])
@pytest.mark.parametrize("later", [0, 1, DAY, TTL - 1])
def test_a_refusal_outlives_the_ttl_and_is_looked_for_where_it_was_written(written, later):
    store = BindingStore(None, outcome_ttl_seconds=TTL)  # type: ignore[arg-type]
    plan = Plan(None, outcomes=[("c-1", Recorded("BindingRejected", written, b"k", "UNKNOWN_PERSON|"))])
    key, field, record, expires_at = store._refusals(plan)
    assert field == b"c-1" and record == f"{written}|k|UNKNOWN_PERSON|"
    assert TTL <= expires_at - written <= 2 * TTL
    # a lookup `later` (within the TTL) looks in the generation it was written to
    now = written + later
    assert key in {refusal_key("c-1", now // TTL + d) for d in (-1, 0, 1)}
    # and so does one whose clock is behind the writer's by a little, at a generation's turn
    assert key in {refusal_key("c-1", (now - 5) // TTL + d) for d in (-1, 0, 1)}


def test_accepted_outcomes_keep_their_keys_and_refusals_stay_out_of_the_plans_json():
    from datetime import date

    store = BindingStore(None, outcome_ttl_seconds=TTL)  # type: ignore[arg-type]
    plan = Plan(None, outcomes=[("c-1", Recorded("BindingRejected", 5, b"k", "UNKNOWN_PERSON|")),
                                ("c-2", Recorded("BindingRevoked", 5, b"k", "{}"))])
    assert store._plan_json(plan, date(2026, 1, 1))["outs"] == [["bnd:out:c-2", "5|k|BindingRevoked|{}", TTL]]
