"""对账 without I/O: every disagreement between the two books is listed, nothing else."""

from hypothesis import given, strategies as st

from services.settlement.domain.reconciliation import Entry, net, reconcile


def test_books_that_agree_have_no_differences():
    book = {"P-1-0": Entry("debit", 100), "P-1-R1-0": Entry("credit", 40)}
    assert reconcile(book, dict(book)) == []


def test_each_kind_of_disagreement_is_named():
    ours = {"a": Entry("debit", 100), "b": Entry("debit", 50), "c": Entry("debit", 7)}
    theirs = {"b": Entry("debit", 55), "c": Entry("credit", 7), "z": Entry("credit", 1)}
    kinds = {d.posting_id: d.kind for d in reconcile(ours, theirs)}
    assert kinds == {"a": "missing_at_bureau", "b": "amount_mismatch", "c": "direction_mismatch",
                     "z": "unknown_to_platform"}


def test_net_is_credits_minus_debits():
    assert net({"a": Entry("debit", 100), "b": Entry("credit", 30)}) == -70


entries = st.dictionaries(st.sampled_from([f"P-{i}" for i in range(12)]),
                          st.builds(Entry, st.sampled_from(["debit", "credit"]), st.integers(0, 10_000)))


@given(entries, entries)
def test_a_posting_is_listed_exactly_when_the_books_disagree_on_it(ours, theirs):
    listed = {d.posting_id for d in reconcile(ours, theirs)}
    disagree = {pid for pid in ours.keys() | theirs.keys() if ours.get(pid) != theirs.get(pid)}
    assert listed == disagree

