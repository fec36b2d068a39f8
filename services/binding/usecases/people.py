"""The registry the binding rules check: PersonRegistered and PersonTransferred from
bureau.accounts, each believed only from the bureau it speaks for (shared/registrations.py)."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from shared.kafka import Received
from shared.registrations import person_changes
from shared.signing import KeyFinder
from services.binding.domain import rules
from services.binding.domain.model import Insured, Scheme
from services.binding.storage.bindings import BindingStore


class Registry:
    def __init__(self, store: BindingStore, broker: KafkaBroker, keys: KeyFinder, name_key: bytes) -> None:
        self._store = store
        self._broker = broker  # what is not believed is dead-lettered
        self._keys = keys
        self._name_key = name_key  # names are kept only as their keyed digest

    async def register_people(self, batch: list[Received]) -> None:
        """Project the registrations and transfers of a batch; other bureau events are the
        settlement service's business."""
        changes = await person_changes(self._broker, batch, self._keys, self._store.standing)
        people = [Insured(p.person_id, p.region, Scheme(p.scheme), rules.name_digest(p.name, self._name_key))
                  for p in changes.registered]
        if people or changes.transfers:
            await self._store.save_insured(people, changes.transfers)
