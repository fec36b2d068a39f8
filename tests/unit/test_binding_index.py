"""The payer index layout (shared/binding_index.py) that settlement's Function reads."""

from datetime import date, timedelta

from hypothesis import given, strategies as st

from shared.binding_index import (Payer, decode_payer, decode_payers, encode_payer, grantor_payer, in_force,
                                  payers_in_force)

START, END = date(2026, 1, 1), date(2026, 12, 31)


def test_a_payer_is_written_with_seven_fields_empty_when_no_limit_and_not_paused():
    payer = Payer("BND-1", "610102199001011234", 1, START, END, "610100")
    assert encode_payer(payer) == "610102199001011234|1|20260101|20261231|610100||"


def test_a_limit_and_a_pause_are_the_sixth_and_seventh_fields():
    payer = Payer("BND-1", "610102199001011234", 2, START, END, "610300", monthly_limit_fen=50_000, paused=True)
    assert encode_payer(payer) == "610102199001011234|2|20260101|20261231|610300|50000|p"


def test_a_zero_limit_is_kept_apart_from_no_limit():
    payer = Payer("BND-1", "610102199001011234", 1, START, END, "610100", monthly_limit_fen=0)
    assert encode_payer(payer).split("|")[5] == "0"
    assert decode_payer("BND-1", encode_payer(payer)).monthly_limit_fen == 0


def test_the_old_five_field_value_reads_as_no_limit_and_not_paused():
    payer = decode_payer("BND-1", "610102199001011234|1|20260101|20261231|610100")
    assert payer == Payer("BND-1", "610102199001011234", 1, START, END, "610100", None, False)


days = st.dates(date(2000, 1, 1), date(2099, 12, 31))
ids = st.text("0123456789X", min_size=1, max_size=18)


@st.composite
def payers(draw, binding_id=st.text("BND-0123456789abcdef", min_size=1, max_size=40)):
    start = draw(days)
    return Payer(draw(binding_id), draw(ids), draw(st.sampled_from([1, 2])), start,
                 draw(st.dates(start, date(2099, 12, 31))), draw(st.sampled_from(["610100", "610300", "110100"])),
                 draw(st.none() | st.integers(0, 10**14)), draw(st.booleans()))


@given(payer=payers())
def test_every_payer_reads_back_as_written(payer):
    assert decode_payer(payer.binding_id, encode_payer(payer)) == payer


@given(payer=payers())
def test_the_first_five_fields_of_any_entry_read_as_the_same_binding_without_limit_or_pause(payer):
    old = "|".join(encode_payer(payer).split("|")[:5])
    assert decode_payer(payer.binding_id, old) == Payer(payer.binding_id, payer.grantor_id, payer.payment_order,
                                                        payer.start_date, payer.end_date, payer.grantor_region)


@given(entries=st.lists(payers(), max_size=5, unique_by=lambda p: p.binding_id))
def test_a_whole_index_reads_back_in_payment_order_from_text_or_bytes(entries):
    index = {p.binding_id: encode_payer(p) for p in entries}
    as_redis = {k.encode(): v.encode() for k, v in index.items()}
    expected = sorted(entries, key=lambda p: (p.payment_order, p.binding_id))
    assert decode_payers(index) == decode_payers(as_redis) == expected


# --- in force: start <= day <= end, China dates, both ends included (binding_index.lua payers_in_force) ---

def test_a_binding_is_in_force_from_its_first_day_through_its_last():
    payer = Payer("BND-1", "G", 1, START, END, "610100")
    assert [in_force(payer, d) for d in (START - timedelta(days=1), START, date(2026, 6, 1), END,
                                         END + timedelta(days=1))] == [False, True, True, True, False]


def test_a_paused_binding_is_still_in_force_and_says_it_is_paused():
    paused = Payer("BND-1", "G", 1, START, END, "610100", 0, paused=True)
    assert payers_in_force({"BND-1": encode_payer(paused)}, START) == [paused]


def test_the_grantors_binding_is_the_one_in_force_not_a_queued_renewal():
    current = Payer("BND-old", "G", 1, START, END, "610100", monthly_limit_fen=50_000)
    renewal = Payer("BND-new", "G", 1, END + timedelta(days=1), date(2027, 12, 31), "610100", monthly_limit_fen=9_000)
    other = Payer("BND-oth", "H", 2, START, END, "610300")
    # the renewal first in the hash: the choice must not depend on the index's order
    index = {p.binding_id: encode_payer(p) for p in (renewal, other, current)}
    assert grantor_payer(index, "G", END) == current
    assert grantor_payer(index, "G", END + timedelta(days=1)) == renewal
    assert grantor_payer(index, "G", START - timedelta(days=1)) is None
    assert grantor_payer(index, "nobody", END) is None


@given(entries=st.lists(payers(), max_size=5, unique_by=lambda p: p.binding_id), day=days)
def test_the_payers_in_force_are_exactly_those_whose_dates_cover_the_day(entries, day):
    index = {p.binding_id: encode_payer(p) for p in entries}
    chosen = payers_in_force(index, day)
    assert chosen == [p for p in decode_payers(index) if p.start_date <= day <= p.end_date]
    for grantor in {p.grantor_id for p in entries}:
        found = grantor_payer(index, grantor, day)
        assert found == next((p for p in chosen if p.grantor_id == grantor), None)
