"""What every settlement job that answers a batch shares: the batch's answers, and how a batch is
answered and delivered.

Nothing stalls a consumer (contract version 2): every message of a batch ends as an outcome, a
rejection or a dead letter. Transient infrastructure errors are retried in place with back-off
(`Outage`; every Function call is idempotent, so redoing a batch is safe); anything else raised
for a batch is a defect, and the batch is then answered message by message, so that one message
is the most a defect can cost: it is answered PLATFORM_ERROR and dead-lettered for operators.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from faststream.kafka import KafkaBroker

from shared import envelope, topics
from shared.institutions import INSTITUTION_CODE_PATTERN
from shared.kafka import Outage, Outgoing, Received, dead_letter, publish_all, publish_replies, reply_to
from shared.logs import shown
from services.settlement import contract as c
from services.settlement.domain import ids
from services.settlement.domain.reasons import ChargeRefused, Reason
from services.settlement.metrics import Noted, Refused, SettlementMetrics
from services.settlement.signatures import Signatures

log = logging.getLogger("settlement")
_INSTITUTION = re.compile(INSTITUTION_CODE_PATTERN)


@dataclass
class Answers:
    """What a batch ends as: outcomes (published and awaited before the offsets are committed),
    replies (best effort), dead letters (with their reason), and what to count once the
    outcomes are published (metrics.py)."""

    outcomes: list[Outgoing] = field(default_factory=list)
    replies: list[Outgoing] = field(default_factory=list)
    dead: list[tuple[Received, str]] = field(default_factory=list)
    noted: list[Noted] = field(default_factory=list)

    def __iadd__(self, other: Answers) -> Answers:
        self.outcomes += other.outcomes
        self.replies += other.replies
        self.dead += other.dead
        self.noted += other.noted
        return self

    def answer(self, msg: Received, topic: str, key: bytes | None, value: bytes) -> None:
        """An outcome on its usual topic, and on the caller's reply_to when it asked for a valid one."""
        self.outcomes.append(Outgoing(topic, key, value))
        self.replies += reply_to(msg, key, value)


class Delivery:
    """Answers a batch of one topic and delivers what it ends as; one per consumed topic, so that
    an outage is logged once per topic (`Outage`)."""

    def __init__(self, topic: str, broker: KafkaBroker, metrics: SettlementMetrics,
                 signatures: Signatures | None) -> None:
        self._outage = Outage(f"settlement {topic}")
        self._topic = topic
        self._broker = broker
        self._metrics = metrics
        # None only in unit tests of what needs no partner: every partner message is refused then
        self._signatures = signatures

    async def each(self, batch: list[Received], work: Callable[[list[Received]], Awaitable[Answers]],
                   on_defect: Callable[[Received, Exception], Answers]) -> None:
        """Answer a batch with `work`; on a defect, each message alone, so that only the message
        that holds it ends in `on_defect`. Then deliver: outcomes and dead letters awaited,
        replies best effort."""
        try:
            answers = await self._outage.retrying(lambda: work(batch))
        except Exception:
            log.exception("defect in a batch of %d from %s; answering its messages one by one", len(batch),
                          self._topic)
            answers = Answers()
            for msg in batch:
                try:
                    answers += await self._outage.retrying(lambda: work([msg]))
                except Exception as exc:
                    log.exception("defect while answering %s[%d]@%d", msg.topic, msg.partition, msg.offset)
                    answers += on_defect(msg, exc)
        # signed once, before a delivery that may be retried
        answers.outcomes = signed(self._signatures, answers.outcomes)
        answers.replies = signed(self._signatures, answers.replies)
        await self._outage.retrying(lambda: self._deliver(answers))
        self._metrics.record(answers.noted)
        await publish_replies(self._broker, answers.replies)

    async def _deliver(self, answers: Answers) -> None:
        await publish_all(self._broker, answers.outcomes)
        for msg, reason in answers.dead:
            await dead_letter(self._broker, msg, reason)



def signed(signatures: Signatures | None, outgoing: list[Outgoing]) -> list[Outgoing]:
    """Signed with the service's key (contract version 3); unsigned only in unit tests."""
    return signatures.signed(outgoing) if signatures is not None else outgoing


def rejected(msg: Received, readable: envelope.Readable, refused: ChargeRefused, charge_id: str | None = None,
             refund_id: str | None = None, institution_code: str | None = None) -> Answers:
    """ChargeRejected on settlement.results (and the caller's reply_to), ids taken from the payload
    where the caller did not name them."""
    payload = readable.body.get("payload") if isinstance(readable.body.get("payload"), dict) else {}
    charge_id = charge_id or _text(payload.get("charge_id"))
    refund_id = refund_id or _text(payload.get("refund_id")) or None
    institution_code = institution_code or _institution(payload.get("institution_code"))
    event = c.ChargeRejected(charge_id=charge_id, refund_id=refund_id, institution_code=institution_code,
                             reason_code=refused.reason, message_zh=refused.message_zh,
                             message_en=refused.message_en, source_event_id=readable.event_id)
    log.info("charge %s refused: %s", shown(charge_id), refused.reason)
    event_id = ids.event_id(c.CHARGE_REJECTED, institution_code, readable.event_id, refused.reason.value)
    value = envelope.seal(c.CHARGE_REJECTED, event, event_id=event_id)
    answers = Answers()
    answers.noted.append(Refused("refund" if readable.event_type == c.CHARGE_REFUNDED else "charge",
                                 refused.reason.value, event_id))
    answers.answer(msg, topics.SETTLEMENT_RESULTS, charge_id.encode() if charge_id else msg.key, value)
    return answers


def platform_error(msg: Received, exc: Exception) -> Answers:
    """A defect: the caller is answered PLATFORM_ERROR when its message can be read, and the
    message is dead-lettered for the operators either way."""
    answers = dead(msg, exc)
    readable = envelope.read(msg.value, c.CHARGE_TYPES)
    if isinstance(readable, envelope.Readable):
        answers += rejected(msg, readable, ChargeRefused(Reason.PLATFORM_ERROR))
    return answers


def dead(msg: Received, exc: Exception) -> Answers:
    """A defect on a topic with no outcome to answer (bureau and binding events): a dead letter."""
    return Answers(dead=[(msg, f"platform error: {exc.__class__.__name__}: {str(exc)[:300]}")])


def _text(value: object) -> str:
    """An id a partner sent, echoed in a refusal: a string, bounded."""
    return value[:64] if isinstance(value, str) else ""


def _institution(value: object) -> str | None:
    return value if isinstance(value, str) and _INSTITUTION.fullmatch(value) else None
