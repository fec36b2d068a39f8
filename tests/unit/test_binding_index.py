"""The payer index layout (shared/binding_index.py) that settlement's Function reads."""

from datetime import date

from hypothesis import given, strategies as st

from shared.binding_index import Payer, decode_payer, encode_payer

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


@given(order=st.sampled_from([1, 2]), limit=st.none() | st.integers(0, 100_000_000), paused=st.booleans())
def test_every_payer_reads_back_as_written(order, limit, paused):
    payer = Payer("BND-x", "610102199001011234", order, START, END, "610100", limit, paused)
    assert decode_payer("BND-x", encode_payer(payer)) == payer
