"""The binding service's queries (c.QUERY_TYPES, read on binding.commands and answered to the
asker only): an earlier command's outcome, a person's registration, a person's bindings and
disputes. Nothing here writes."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from shared import envelope
from shared.identity import mask_id_number
from shared.money import Fen
from services.binding import contract as c
from services.binding.domain import rules
from services.binding.domain.model import Binding
from services.binding.domain.reasons import BindingRefused
from services.binding.storage.bindings import BindingStore, decode_bindings, epoch, moment
from services.binding.usecases.outcomes import binding_id_for, created, fen, made_by, recorded, rejection

MAX_LISTED_DISPUTES = 100


class Queries:
    def __init__(self, store: BindingStore, name_key: bytes) -> None:
        self._store = store
        self._name_key = name_key

    async def answer(self, cmd: envelope.Readable) -> bytes:
        """The answer to a query, or its refusal when it is not well-formed."""
        try:
            c.CommandEnvelope.model_validate(cmd.body)
            query: BaseModel = c.COMMAND_MODELS[cmd.event_type].model_validate(cmd.body["payload"])
        except ValidationError as exc:
            return rejection(cmd.event_id, BindingRefused(c.reason_for(exc), c.describe(exc)), epoch(envelope.now()))
        if isinstance(query, c.QueryCommandOutcome):
            return await self._outcome_of(cmd.event_id, query.command_id)
        if isinstance(query, c.QueryPerson):
            return await self._person_found(cmd.event_id, query)
        if isinstance(query, c.QueryDisputes):
            return await self._disputes_listed(cmd.event_id, query)
        return await self._bindings_listed(cmd.event_id, query)

    async def _disputes_listed(self, query_id: str, query: c.QueryDisputes) -> bytes:
        """The grantor's disputes, newest first, the beneficiary's ID masked."""
        disputes = await self._store.disputes_of(query.person_id, MAX_LISTED_DISPUTES)
        event = c.DisputesListed(command_id=query_id, person_id=mask_id_number(query.person_id), disputes=[
            c.ListedDispute(dispute_id=d.dispute_id, reference=d.reference, binding_id=d.binding_id,
                            beneficiary_id=mask_id_number(d.beneficiary_id), charge_id=d.charge_id,
                            institution_code=d.institution_code, amount=Fen(d.amount), status=d.status.value,
                            opened_at=moment(d.opened_at),
                            decided_at=None if d.decided_at is None else moment(d.decided_at))
            for d in disputes])
        return envelope.seal(c.DISPUTES_LISTED, event, event_id=envelope.outcome_id(query_id, c.DISPUTES_LISTED))

    async def _outcome_of(self, query_id: str, command_id: str) -> bytes:
        """An earlier command's outcome, found and rebuilt exactly as a redelivery of that command
        finds and rebuilds it (commands.py: a recorded outcome first, else the binding the command
        made); so the answer is byte for byte what binding.events carried."""
        binding_id = binding_id_for(command_id)
        outs, _, owners = await self._store.lookup([command_id], [], [binding_id])
        if command_id in outs:
            return recorded(command_id, outs[command_id])
        if (ben := owners.get(binding_id)) is not None:
            records = await self._store.bindings_read([ben])
            if (made := made_by(command_id, decode_bindings(ben, records[ben]))) is not None:
                return created(command_id, made)
        event = c.CommandOutcomeUnknown(command_id=command_id)
        return envelope.seal(c.COMMAND_OUTCOME_UNKNOWN, event,
                             event_id=envelope.outcome_id(query_id, c.COMMAND_OUTCOME_UNKNOWN))

    async def _person_found(self, query_id: str, query: c.QueryPerson) -> bytes:
        """A person's registration as the rules see it; a name sent is compared by its keyed
        digest (rules.name_matches, the comparison behind NAME_MISMATCH), never kept or logged."""
        _, people, _ = await self._store.lookup([], [query.person_id], [])
        insured = people.get(query.person_id)
        matches = None
        if insured is not None and query.name is not None:
            matches = rules.name_matches(insured, query.name, self._name_key)
        event = c.PersonFound(command_id=query_id, person_id=mask_id_number(query.person_id),
                              registered=insured is not None, region=insured and insured.region,
                              scheme=insured and insured.scheme.value, name_matches=matches)
        return envelope.seal(c.PERSON_FOUND, event, event_id=envelope.outcome_id(query_id, c.PERSON_FOUND))

    async def _bindings_listed(self, query_id: str, query: c.QueryBindings) -> bytes:
        """我的共济关系: both roles of a person, the counterpart's ID masked."""
        listed: list[c.ListedBinding] = []
        if query.role in (None, "grantor"):
            listed += [_listed(b, "grantor") for b in await self._store.bindings_of_grantor(query.person_id)]
        if query.role in (None, "beneficiary"):
            listed += [_listed(b, "beneficiary") for b in await self._store.bindings_of_beneficiary(query.person_id)]
        event = c.BindingsListed(command_id=query_id, person_id=mask_id_number(query.person_id), bindings=listed)
        return envelope.seal(c.BINDINGS_LISTED, event, event_id=envelope.outcome_id(query_id, c.BINDINGS_LISTED))


def _listed(b: Binding, role: str) -> c.ListedBinding:
    counterpart = b.beneficiary_id if role == "grantor" else b.grantor_id
    return c.ListedBinding(binding_id=b.binding_id, role=role, counterpart_id=mask_id_number(counterpart),
                           relation=b.relation.value, payment_order=b.payment_order, start_date=b.start_date,
                           end_date=b.end_date, status=b.status.value, grantor_region=b.grantor_region,
                           beneficiary_region=b.beneficiary_region, monthly_limit=fen(b.monthly_limit), paused=b.paused)
