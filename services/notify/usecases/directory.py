"""What notify knows of the world, projected from the topics: contacts (phone, masked name,
region) from bureau.accounts, institutions' registered names from bureau.institutions, and the
bindings in force (for the ending-soon check) from binding.events. Each believed only from the
bureau that speaks for it."""

from __future__ import annotations

from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from shared import envelope
from shared.bureau import speaks_for_region
from shared.identity import mask_name
from shared.institutions import INSTITUTION_EVENT_TYPES, InstitutionRegistered
from shared.kafka import Received, dead_letter
from shared.registrations import person_changes
from shared.signing import KeyFinder, SignatureRefused, verify_received
from services.notify import contract as c
from services.notify.storage.deliveries import DeliveryStore
from services.notify.usecases.inputs import invalid_fields


def short_masked_name(name: str) -> str:
    """张*明 style, at most four characters, so every template fits its segments."""
    masked = mask_name(name)
    return masked if len(masked) <= 4 else masked[0] + "**" + masked[-1]


class Directory:
    def __init__(self, store: DeliveryStore, broker: KafkaBroker, keys: KeyFinder) -> None:
        self._store, self._broker = store, broker  # what is not believed is dead-lettered
        self._keys = keys

    async def on_bureau_accounts(self, batch: list[Received]) -> None:
        """Project PersonRegistered into the contacts the SMS go to, the name only masked, and
        PersonTransferred beside them; each believed only from the bureau it speaks for
        (shared/registrations.py), so a phone changes only by the person's own region's bureau."""
        changes = await person_changes(self._broker, batch, self._keys, self._store.standing)
        people = [(p.person_id, p.phone, short_masked_name(p.name), p.region) for p in changes.registered]
        if people or changes.transfers:
            await self._store.save_contacts(people, changes.transfers)

    async def on_institutions(self, batch: list[Received]) -> None:
        """Project InstitutionRegistered: the names payment SMS give (never what a HIS sent).
        Believed only from the bureau of the institution's region, and only that region's bureau
        renames it (NOT_SIGNERS otherwise, dead-lettered)."""
        signed = []
        now = envelope.now()
        for msg in batch:
            signer = verify_received(msg, self._keys, now)
            readable = envelope.read(msg.value, INSTITUTION_EVENT_TYPES)
            if isinstance(readable, envelope.Unreadable):
                why = f"{signer.value}: {readable.error}" if isinstance(signer, SignatureRefused) else readable.error
                await dead_letter(self._broker, msg, why)
                continue
            if isinstance(signer, SignatureRefused):
                await dead_letter(self._broker, msg, f"{signer.value}: InstitutionRegistered not believed")
                continue
            try:
                registered = InstitutionRegistered.model_validate(readable.body.get("payload"))
            except ValidationError as exc:
                await dead_letter(self._broker, msg, f"invalid InstitutionRegistered: {invalid_fields(exc)}")
                continue
            signed.append((msg, signer, registered))
        if not signed:
            return
        regions = await self._store.institution_regions(list({r.institution_code: None for _, _, r in signed}))
        names: dict[str, str] = {}
        for msg, signer, registered in signed:
            code, region = registered.institution_code, registered.region
            its_region = regions.get(code, region)
            if not speaks_for_region(signer, region) or its_region != region:
                await dead_letter(self._broker, msg, f"{SignatureRefused.NOT_SIGNERS.value}: InstitutionRegistered for "
                                                     f"region {region} signed by {signer.key_id}; the institution's "
                                                     f"region is {its_region}")
                continue
            names[code], regions[code] = registered.name, registered.region
        if names:
            await self._store.save_institutions(names, {code: regions[code] for code in names})

    async def on_binding_projection(self, batch: list[Received]) -> None:
        """Project binding.events into the bindings in force, for the ending-soon check. What
        cannot be read is skipped here: the answering consumer of the same topic dead-letters it."""
        changes = []
        for msg in batch:
            readable = envelope.read(msg.value, c.BINDING_TYPES)
            if isinstance(readable, envelope.Unreadable):
                continue
            model = {"BindingCreated": c.BindingCreatedIn, "BindingRevoked": c.BindingRevokedIn}.get(
                readable.event_type)
            if model is None:
                continue
            try:
                event = model.model_validate(readable.body.get("payload"))
            except ValidationError:
                continue
            if event.end_date is not None:  # a revocation is found by its end date
                changes.append((event.binding_id, event.grantor_id, event.beneficiary_id, event.end_date,
                                isinstance(event, c.BindingCreatedIn)))
        if changes:
            await self._store.follow_bindings(changes)
