"""shared/durability.py: what a batch's pipeline asks of the replicas, and what its answer means.
The waits themselves run against real Valkey processes in tests/integration/test_failover.py."""

from __future__ import annotations

import logging

import pytest

from shared.durability import Durability, ReplicaMissing
from shared.kafka import is_transient


class Pipe:
    """Records what is appended to a pipeline."""

    def __init__(self) -> None:
        self.commands: list[tuple] = []

    def incr(self, key: str) -> None:
        self.commands.append(("INCR", key))

    def execute_command(self, *args) -> None:
        self.commands.append(args)


def test_a_single_server_waits_for_nothing():
    d = Durability(key="stl:durable")
    pipe = Pipe()
    assert d.add_wait(pipe) == 0 and pipe.commands == []
    assert d.check(["a", "b"]) == ["a", "b"]


def test_the_wait_goes_last_after_a_write_that_brings_the_connection_to_the_streams_end():
    memory, disk = Durability(1, 500, key="k"), Durability(2, 800, key="k", on_disk=True)
    for d, wait in ((memory, ("WAIT", 1, 500)), (disk, ("WAITAOF", 1, 2, 800))):
        pipe = Pipe()
        assert d.add_wait(pipe) == 2
        assert pipe.commands == [("INCR", "k"), wait]


def test_enough_replicas_give_back_the_batchs_own_replies():
    assert Durability(1, 500, key="k").check(["x", 7, 1]) == ["x"]
    assert Durability(2, 500, key="k", on_disk=True).check(["x", "y", 7, [1, 2]]) == ["x", "y"]


@pytest.mark.parametrize("d, waited", [
    (Durability(1, 500, key="k"), 0),
    (Durability(2, 500, key="k"), 1),
    (Durability(1, 500, key="k", on_disk=True), [1, 0]),
    (Durability(1, 500, key="k", on_disk=True), [0, 1]),   # not even on the primary's own disk
])
def test_too_few_replicas_is_an_outage_and_readiness_says_so(d, waited):
    with pytest.raises(ReplicaMissing) as raised:
        d.check(["x", 7, waited])
    assert is_transient(raised.value)       # retried in place, with back-off, never dead-lettered
    ok, detail = d.last
    assert not ok and "within 500 ms" in detail
    assert d.check(["x", 8, [1, d.replicas] if d.on_disk else d.replicas]) == ["x"]
    assert d.last[0]


def test_an_operator_may_go_on_without_a_replica_and_it_is_said_loudly(caplog):
    d = Durability(1, 500, go_on_without=True, key="k")
    with caplog.at_level(logging.ERROR):
        assert d.check(["x", 7, 0]) == ["x"]
    assert "NOT DURABLE" in caplog.text and not d.last[0]


def test_an_error_of_the_wait_itself_is_an_outage_that_names_it():
    for replies in (["x", 7, ValueError("WAITAOF cannot be used when appendonly is off")],
                    ["x", ValueError("READONLY You can't write against a read only replica."), 1]):
        with pytest.raises(ReplicaMissing, match="appendonly|READONLY"):
            Durability(1, 500, key="k").check(replies)


class Executed(Pipe):
    def __init__(self, replies: list) -> None:
        super().__init__()
        self.replies = replies

    async def execute(self, raise_on_error: bool = True) -> list:
        assert not raise_on_error  # the wait's answer is read even when a write failed
        return self.replies


async def test_execute_appends_the_wait_and_gives_back_the_writes_replies_or_their_error():
    d = Durability(1, 500, key="k")
    pipe = Executed(["x", 7, 1])
    assert await d.execute(pipe) == ["x"] and pipe.commands[-1] == ("WAIT", 1, 500)
    with pytest.raises(KeyError):
        await d.execute(Executed([KeyError("a write failed"), 7, 1]))
    assert (await d.execute(Executed([KeyError("kept"), 7, 1]), raise_on_error=False))[0].args == ("kept",)
