"""Headers are bounded and decoded leniently before FastStream's parser reads them
(shared.kafka.tolerant_parser): a record whose headers are already within bounds is handed on
as it is, any other one as the bounded, leniently decoded copy."""

from __future__ import annotations

import asyncio

from aiokafka.structs import ConsumerRecord

from shared.kafka import tolerant_parser


def record(headers: list[tuple[str, bytes | None]]) -> ConsumerRecord:
    return ConsumerRecord("his.charges", 0, 7, 0, 0, b"k", b"{}", None, 2, 2, headers)


def parsed(raw):
    async def original(r):
        return r
    return asyncio.run(tolerant_parser(raw, original))


def test_headers_within_bounds_are_handed_on_untouched():
    r = record([("x-signer", b"his:H61010100001:k1"), ("x-signature", b"A" * 88)])
    assert parsed(r) is r
    batch = (r, record([("correlation_id", b"c-1")]))
    assert all(a is b for a, b in zip(parsed(batch), batch))


def test_binary_long_many_or_missing_values_are_bounded_and_decoded_leniently():
    r = record([("reply_to", b"\xff\xfereply.x"), ("big", b"a" * 5000), ("none", None)]
               + [(f"h{i}", b"v") for i in range(40)])
    got = parsed(r)
    assert got is not r and len(got.headers) == 32
    assert got.headers[0] == ("reply_to", "\ufffd\ufffdreply.x".encode())
    assert got.headers[1] == ("big", b"a" * 1024) and got.headers[2] == ("none", b"")


def test_valid_utf8_beyond_ascii_takes_the_long_way_and_stays_the_same():
    r = record([("x-name", "张三".encode())])
    got = parsed(r)
    assert got.headers == r.headers
