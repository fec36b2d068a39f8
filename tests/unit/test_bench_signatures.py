"""make bench's signature section: what it reads off a service's /metrics and a py-spy profile,
its per-message measure, and the bench's messages signed as their partners would sign them."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from prometheus_client import CollectorRegistry, Counter, generate_latest

from bench.population import HOSPITAL, REGION, Population
from bench.profile import share_in
from bench.signatures import counted, difference, ed25519
from shared.signing import InstitutionKey, KeyRing, institution_keys, verify
from tooling.devkeys import DevKeys
from simulator.partners import Partners, as_text


def test_the_services_own_count_is_read_off_its_metrics_text():
    registry = CollectorRegistry()
    seconds = Counter("fma_signature_seconds", "s", ["op"], registry=registry)
    count = Counter("fma_signatures", "n", ["op", "verdict"], registry=registry)
    seconds.labels("verify").inc(0.25)
    seconds.labels("sign").inc(2.5e-05)
    count.labels("verify", "verified").inc(3)
    count.labels("verify", "UNSIGNED").inc(1)
    before = counted(generate_latest(registry).decode())
    assert before == {("seconds", "verify"): 0.25, ("seconds", "sign"): 2.5e-05, ("count", "verify:verified"): 3.0,
                      ("count", "verify:UNSIGNED"): 1.0}
    count.labels("verify", "verified").inc(2)
    count.labels("sign", "signed").inc(4)
    moved = difference(before, counted(generate_latest(registry).decode()))
    assert moved[("count", "verify:verified")] == 2 and moved[("count", "sign:signed")] == 4
    assert moved[("seconds", "verify")] == 0 and counted("# nothing here\n") == {}


def test_the_share_of_profile_samples_inside_a_file():
    collapsed = ("main (a.py:1);verify (shared/signing.py:272) 30\n"
                 "main (a.py:1);settle (s.py:9) 60\n"
                 "main (a.py:1);sign (shared/signing.py:111);other (b.py:2) 10\n")
    assert share_in(collapsed, "shared/signing.py") == 0.4
    assert share_in("", "shared/signing.py") is None


def test_the_per_message_measure_gives_an_ordered_spread_of_each_operation():
    spreads = ed25519(each=20, rounds=3)
    assert set(spreads) == {"sign", "verify", "sign, libsodium", "verify, libsodium", "sign, platform path",
                            "verify, platform path"}
    assert all(0 < s.low <= s.median <= s.high and s.rounds == 3 for s in spreads.values())


def test_the_bench_signs_each_message_as_its_partner_would(tmp_path):
    keys = DevKeys.create(tmp_path)
    population = Population.draw(40, 4, 0)
    population.partners = Partners(keys)
    ring = KeyRing.load(keys.partner_keys_file)
    key, value, headers = population.hospital()
    registered = json.loads(value)["payload"]
    hospital = {k.key_id: k for k in institution_keys(
        HOSPITAL, REGION, [InstitutionKey.model_validate(k) for k in registered["public_keys"]])}
    now = datetime.now(timezone.utc)

    def signer(topic, key, value, headers):
        return verify(topic, key, value, as_text(headers), lambda kid: hospital.get(kid) or ring.find(kid), now)

    assert signer("bureau.institutions", key, value, headers).region == REGION
    charge = population.charges(3, "t", 0.5)[0]
    assert signer("his.charges", charge.key, charge.value, charge.headers).institution == HOSPITAL
    reg_key, reg_value, reg_headers = population.registrations()[0]
    assert signer("bureau.accounts", reg_key, reg_value, reg_headers).key_id == f"bureau:{REGION}:k1"
    command = population.binding_commands()[0]
    assert signer("binding.commands", command.key, command.value, command.headers).owner == "gateway"
    limit = population.limit_commands([("B1", population.grantors[0].person_id)], "300.00")[0]
    assert signer("binding.commands", limit.key, limit.value, limit.headers).owner == "gateway"
    # a charge's signature covers its topic: moved to another, it does not verify
    assert signer("his.reconciliation", charge.key, charge.value, charge.headers) == "BAD_SIGNATURE"
