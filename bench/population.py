"""Who the bench registers and what it sends: people, the designated hospital, bindings and
charges, as contract version 3 messages built and signed before the clock starts.

The envelope is built here from the public contract (event_id, event_type, schema_version,
occurred_at, payload) rather than through the services' own code, so the bench keeps working
while that code is being rewritten. Each message is signed as its partner would sign it
(simulator/partners.py): the hospital's charges with its key `his:HBENCH-01:k1`, registrations with
Xi'an's bureau key, binding commands with the gateway's; `Population.partners` is set once the
stack (and so its development keys) is up.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import NamedTuple

from shared.identity import make_id_number
from shared.topics import BINDING_COMMANDS, BUREAU_ACCOUNTS, BUREAU_INSTITUTIONS, HIS_CHARGES
from simulator.partners import Headers, Partners

CHINA = timezone(timedelta(hours=8))
REGION = "610100"  # Xi'an: every bench person and the hospital, so no cross-region rule is in play
HOSPITAL = "HBENCH-01"
SIGNATURE = "sha256:" + "ab" * 32
BUCKETS = 65_536  # shared.state.PERSON_BUCKETS: persons are stored in bucketed hashes


def now() -> datetime:
    return datetime.now(CHINA)


def envelope(event_type: str, payload: dict, event_id: str | None = None) -> bytes:
    return json.dumps({"event_id": event_id or str(uuid.uuid4()), "event_type": event_type, "schema_version": 1,
                       "occurred_at": now().isoformat(timespec="seconds"), "payload": payload},
                      ensure_ascii=False, separators=(",", ":")).encode()


class Charge(NamedTuple):
    """One message on his.charges: the result's key (its charge id), the patient key, the
    envelope, whether a grantor pays, and its signature headers."""

    charge_id: bytes
    key: bytes
    value: bytes
    by_grantor: bool
    headers: Headers


class Command(NamedTuple):
    """One message on binding.commands, signed with the gateway's key."""

    command_id: str
    key: bytes
    value: bytes
    headers: Headers


def person_ids(count: int, per_bucket: int) -> list[str]:
    """Valid, distinct ID numbers. With `per_bucket` > 0 they fill count/per_bucket of the 65,536
    person buckets (bucket = birth date and sequence digits mod 65,536), as a population of
    per_bucket × 65,536 people would: Redis's per-key overhead is then shared as it is at a
    province's scale instead of one bucket per person. 0: spread like the first `count` people."""
    wanted = max(1, -(-count // per_bucket)) if per_bucket > 0 else BUCKETS
    ids: list[str] = []
    day = date(1945, 1, 1)
    while len(ids) < count:
        base = int(day.strftime("%Y%m%d")) * 1000
        r = base % BUCKETS
        # the sequences s in 0..999 with (r + s) mod 65,536 below `wanted`: at most two runs
        seqs = list(range(1000)) if wanted >= BUCKETS else \
            [*range(0, max(0, min(1000, wanted - r))), *range(BUCKETS - r, min(1000, BUCKETS - r + wanted))]
        ids += [make_id_number("610102", day, s) for s in seqs[:count - len(ids)]]
        day += timedelta(days=1)
        if day.year > 2004:
            raise ValueError(f"cannot draw {count} people into {wanted} buckets")
    return ids


@dataclass(frozen=True)
class Person:
    person_id: str
    scheme: str  # employee | resident
    name: str
    phone: str

    def registered(self) -> dict:
        p = {"person_id": self.person_id, "name": self.name, "region": REGION, "scheme": self.scheme,
             "phone": self.phone}
        return p | ({"employer": "压测单位", "balance": "100000.00"} if self.scheme == "employee"
                    else {"community": "压测社区"})

    def party(self) -> dict:
        p = self.registered()
        return {"id_number": self.person_id, "name": self.name, "region": REGION, "phone": self.phone,
                "employer": p.get("employer"), "community": p.get("community")}


@dataclass
class Population:
    """Residents who are beneficiaries (two grantors each), employees who are their grantors,
    and employees who pay from their own account."""

    beneficiaries: list[Person]
    grantors: list[Person]
    own: list[Person]
    partners: Partners | None = field(default=None, repr=False)  # the stack's development keys, once up

    def signed(self, topic: str, key: bytes, value: bytes, payload: dict) -> Headers:
        """The headers of `value` signed by the partner the payload speaks for."""
        if self.partners is None:
            raise RuntimeError("Population.partners is not set: the stack's keys sign the bench's messages")
        return self.partners.headers(topic, key, value, payload)

    def charge(self, charge_id: bytes, key: bytes, event_type: str, payload: dict, by_grantor: bool) -> Charge:
        value = envelope(event_type, payload)
        return Charge(charge_id, key, value, by_grantor, self.signed(HIS_CHARGES, key, value, payload))

    def registrations(self) -> list[tuple[bytes, bytes, Headers]]:
        """(key, PersonRegistered, headers) of everyone, signed by Xi'an's bureau."""
        out = []
        for p in self.everyone():
            payload, key = p.registered(), p.person_id.encode()
            value = envelope("PersonRegistered", payload)
            out.append((key, value, self.signed(BUREAU_ACCOUNTS, key, value, payload)))
        return out

    def hospital(self) -> tuple[bytes, bytes, Headers]:
        """(key, InstitutionRegistered, headers): the bench's hospital with its public key, signed by
        its region's bureau."""
        assert self.partners is not None
        payload = {"institution_code": HOSPITAL, "name": "压测医院", "region": REGION, "kind": "hospital",
                   "public_keys": self.partners.institution_public_keys(HOSPITAL)}
        value = envelope("InstitutionRegistered", payload)
        return HOSPITAL.encode(), value, self.signed(BUREAU_INSTITUTIONS, HOSPITAL.encode(), value, payload)

    def command(self, event_type: str, key: bytes, payload: dict) -> Command:
        cid = str(uuid.uuid4())
        value = envelope(event_type, payload, cid)
        return Command(cid, key, value, self.signed(BINDING_COMMANDS, key, value, payload))

    @classmethod
    def draw(cls, people: int, bindings: int, per_bucket: int) -> "Population":
        ids = person_ids(people, per_bucket)
        n_ben = max(1, bindings // 2)
        if n_ben + 2 * n_ben + 1 > people:
            raise ValueError(f"BENCH_PEOPLE={people} too few for BENCH_BINDINGS={bindings}")

        buckets = max(1, -(-people // per_bucket)) if per_bucket > 0 else BUCKETS

        def make(pid: str, scheme: str, i: int) -> Person:
            # Phones fill the same number of notify's phone buckets (phone mod 65,536) as the ID
            # numbers fill person buckets, as a province's phones would at that density.
            return Person(pid, scheme, f"压测{i % 1000:03d}", f"139{i % buckets + BUCKETS * (i // buckets):08d}")
        everyone = [make(pid, "resident" if i < n_ben else "employee", i) for i, pid in enumerate(ids)]
        return cls(everyone[:n_ben], everyone[n_ben:3 * n_ben], everyone[3 * n_ben:])

    def everyone(self) -> list[Person]:
        return self.beneficiaries + self.grantors + self.own

    def binding_commands(self) -> list[Command]:
        """CreateBinding for fresh pairs: each beneficiary gets grantor order 1 and grantor order 2,
        starting today (China time) for a year."""
        start = now().date()
        end = start + timedelta(days=365)
        out = []
        for i, ben in enumerate(self.beneficiaries):
            for order in (1, 2):
                grantor = self.grantors[2 * i + order - 1]
                form = {"grantor": grantor.party(), "beneficiary": ben.party(), "relation": "father",
                        "payment_order": order, "start_date": start.isoformat(), "end_date": end.isoformat(),
                        "notice_accepted": True, "signature_digest": SIGNATURE, "channel": "window",
                        "clerk_id": "BENCH"}
                out.append(self.command("CreateBinding", ben.person_id.encode(), form))
        return out

    def limit_commands(self, bindings: list[tuple[str, str]], monthly_limit: str | None) -> list[Command]:
        """SetGrantorLimit for each (binding id, grantor id): the grantor sets a monthly limit on the
        binding (共济限额) in the app, or with None lifts it."""
        return [self.command("SetGrantorLimit", binding_id.encode(),
                             {"binding_id": binding_id, "requested_by": grantor_id, "monthly_limit": monthly_limit,
                              "channel": "app"})
                for binding_id, grantor_id in bindings]

    def quotes(self, count: int, tag: str) -> list[tuple[bytes, bytes, dict]]:
        """(charge id, patient key, ChargeSubmitted payload) of `count` charges of beneficiaries
        (grantor 1 pays), to be quoted (预结算) and then settled with the quote's id."""
        return [(c.charge_id, c.key, json.loads(c.value)["payload"]) for c in self.charges(count, tag, 1.0)]

    def patients(self, count: int, grantor_share: float) -> list[tuple[Person, bool]]:
        """Who the n-th of `count` charges is for, and whether a grantor pays: a `grantor_share` of
        them beneficiaries (no account of their own: grantor 1 pays), the rest employees who pay
        from their own account."""
        every = round(1 / grantor_share) if grantor_share > 0 else 0
        out = []
        for n in range(count):
            by_grantor = bool(every) and n % every == 0
            pool = self.beneficiaries if by_grantor else self.own
            out.append((pool[(n // (every or 1)) % len(pool)] if by_grantor else pool[n % len(pool)], by_grantor))
        return out

    def charges(self, count: int, tag: str, grantor_share: float) -> list[Charge]:
        """`count` ChargeSubmitted of the hospital for `patients(count, grantor_share)`, signed with
        its key."""
        at = now().isoformat(timespec="seconds")
        out = []
        for n, (p, by_grantor) in enumerate(self.patients(count, grantor_share)):
            charge_id = f"B{tag}-{n}"
            payload = {"charge_id": charge_id, "institution_code": HOSPITAL, "institution_region": REGION,
                       "patient_id": p.person_id, "patient_name": p.name, "code_holder_id": p.person_id,
                       "presented_via": "own_device", "visit_kind": "pharmacy", "total": "112.34",
                       "fund_paid": "100.00", "individual_borne": "12.34", "charged_at": at}
            out.append(self.charge(charge_id.encode(), p.person_id.encode(), "ChargeSubmitted", payload, by_grantor))
        return out
