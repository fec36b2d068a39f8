"""Queries on settlement.queries, answered only on the caller's reply topic: the grantor's
consumption (家庭共济消费查询: every payment from his account, per beneficiary, with totals and
the binding's limit this month) and an account's balance (QueryAccount)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from shared import envelope
from shared.binding_index import Payer, grantor_payer
from shared.identity import mask_id_number
from shared.kafka import Received, dead_letter, publish_replies, reply_to
from shared.money import Fen
from services.settlement import contract as c
from services.settlement.domain import ids
from services.settlement.domain.consumption import by_beneficiary
from services.settlement.domain.reasons import ChargeRefused, Reason
from services.settlement.signatures import Signatures
from services.settlement.storage.accounts import SettlementStore
from services.settlement.usecases.answers import rejected, signed


class Queries:
    def __init__(self, store: SettlementStore, broker: KafkaBroker, clock: Callable[[], datetime] = envelope.now,
                 signatures: Signatures | None = None) -> None:
        self._store = store
        self._broker = broker
        self._clock = clock
        # None only in unit tests of what needs no partner
        self._signatures = signatures

    async def answer_query(self, msg: Received) -> None:
        """家庭共济消费查询 (every payment from a grantor's account, per beneficiary, with totals)
        or an account's balance (QueryAccount); answered only on the caller's reply topic."""
        readable = envelope.read(msg.value, c.QUERY_TYPES)
        if isinstance(readable, envelope.Unreadable):
            await dead_letter(self._broker, msg, readable.error)
            return
        answer = await self._answer(msg, readable)
        await publish_replies(self._broker, signed(self._signatures, reply_to(msg, msg.key, answer)))

    async def answer_query_defect(self, msg: Received) -> None:
        readable = envelope.read(msg.value, c.QUERY_TYPES)
        if isinstance(readable, envelope.Readable):
            refused = ChargeRefused(Reason.PLATFORM_ERROR)
            await publish_replies(self._broker, signed(self._signatures, rejected(msg, readable, refused).replies))

    async def _answer(self, msg: Received, readable: envelope.Readable) -> bytes:
        """A query's answer, or ChargeRejected INVALID_CHARGE when it is not well-formed."""
        account = readable.event_type == c.QUERY_ACCOUNT
        try:
            q = (c.QueryAccount if account else c.QueryConsumption).model_validate(readable.body.get("payload"))
        except ValidationError as exc:
            refused = ChargeRefused(Reason.INVALID_CHARGE, c.describe(exc))
            return rejected(msg, readable, refused).outcomes[0].value
        return await (self._account(readable.event_id, q) if account else self._consumption(readable, q))

    async def _consumption(self, readable: envelope.Readable, q: c.QueryConsumption) -> bytes:
        rows_by = by_beneficiary(await self._store.spending(q.grantor_id), q.date_from, q.date_to)
        limits = await self._limits(q.grantor_id, list(rows_by))
        names = await self._store.institution_names(sorted({r.institution_code for rows in rows_by.values()
                                                            for r in rows}))
        groups = [c.BeneficiarySpending(
            beneficiary_id=mask_id_number(beneficiary),
            payments=[c.Payment(charge_id=r.charge_id, institution_code=r.institution_code,
                                institution_name=names.get(r.institution_code),
                                settled_at=r.settled_at, paid=Fen(r.paid), refunded=Fen(r.refunded)) for r in rows],
            total_paid=Fen(sum(r.paid for r in rows)), total_refunded=Fen(sum(r.refunded for r in rows)),
            **limits.get(beneficiary, {}))
            for beneficiary, rows in rows_by.items()]
        event = c.ConsumptionListed(command_id=readable.event_id, grantor_id=mask_id_number(q.grantor_id),
                                    date_from=q.date_from, date_to=q.date_to, beneficiaries=groups,
                                    total_paid=Fen(sum(g.total_paid for g in groups)),
                                    total_refunded=Fen(sum(g.total_refunded for g in groups)))
        return envelope.seal(c.CONSUMPTION_LISTED, event,
                             event_id=ids.event_id(c.CONSUMPTION_LISTED, readable.event_id))

    async def _limits(self, grantor_id: str, beneficiaries: list[str]) -> dict[str, dict]:
        """Per beneficiary, the grantor's binding in force today (China time) as the payer index
        holds it (I-1, read by shared/binding_index.py): its monthly limit, what is used (paid or
        held) this calendar month and left, paused. A renewal queued to start later is not it."""
        today = envelope.china_today(self._clock())
        found: dict[str, Payer] = {}
        for beneficiary in beneficiaries:
            payer = grantor_payer(await self._store.payers(beneficiary), grantor_id, today)
            if payer is not None:
                found[beneficiary] = payer
        month = today.strftime("%Y%m")
        used = await self._store.used_many([p.binding_id for p in found.values()], month)
        return {beneficiary: {
            "binding_id": p.binding_id, "paused": p.paused, "used_this_month": Fen(used[p.binding_id]),
            "monthly_limit": None if p.monthly_limit_fen is None else Fen(p.monthly_limit_fen),
            "left_this_month": None if p.monthly_limit_fen is None
            else Fen(max(p.monthly_limit_fen - used[p.binding_id], 0))}
            for beneficiary, p in found.items()}

    async def _account(self, query_id: str, q: c.QueryAccount) -> bytes:
        """The account as the next charge would find it: the balance the settle Function pays from."""
        account = await self._store.account(q.person_id)
        event = c.AccountFound(
            command_id=query_id, person_id=mask_id_number(q.person_id), registered=account is not None,
            region=account and account.region, scheme=account and account.scheme,
            balance=Fen(account.balance) if account and account.scheme == "employee" else None,
            held=Fen(account.held) if account and account.scheme == "employee" else None)
        return envelope.seal(c.ACCOUNT_FOUND, event, event_id=ids.event_id(c.ACCOUNT_FOUND, query_id))
