"""The books stay true: a hypothesis state machine of charges, refunds, bureau movements and
snapshots (with their watermarks) against a plain in-memory model of both books, calling the
settlement Functions on a real Valkey (the machine: tests/books_machine.py).
"""

from __future__ import annotations

import pytest

from tests.books_machine import Books, run_machine

pytestmark = pytest.mark.integration


def test_the_cached_books_stay_true_under_any_sequence(valkey):
    run_machine(Books, valkey.url, max_examples=80)
