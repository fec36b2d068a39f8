"""The Kafka ACLs of deploy/kafka-acls.sh against what the code does, and their copy in
docs/operations.md ("Broker security").

The script is run with a stand-in for kafka-acls.sh that prints its arguments, so these are the
ACLs it would add. Every topic a service reads or writes in the AsyncAPI document generated from
the code (docs/asyncapi.yaml, kept current by tests/unit/test_asyncapi.py) must be allowed to that
service's principal; partners (a bureau, a HIS) may read only their own topics. The commands in
the operations guide are rendered from the script; regenerate them with

    .venv/bin/python -m tests.unit.test_kafka_acls
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from shared.kafka import consumer_options
from shared.settings import ServiceSettings
from shared import topics as t

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "kafka-acls.sh"
DOC = ROOT / "docs" / "operations.md"
BEGIN, END = "<!-- kafka-acls:begin -->", "<!-- kafka-acls:end -->"
SERVICES = ("gateway", "binding", "settlement", "notify")
ADMIN = "--bootstrap-server kafka:9092 --command-config /tmp/admin.properties"
# Topics no partner may read (contract version 3: the platform's internal topics).
INTERNAL = [t.SETTLEMENT_RESULTS, t.BINDING_EVENTS, t.BINDING_COMMANDS, t.GATEWAY_AUDIT, t.GATEWAY_REVOCATIONS,
            t.SETTLEMENT_QUERIES, t.NOTIFY_DELIVERIES, t.SMS_UPLINK, "reply.gateway.x",
            *(t.dead_letter_topic(x) for x in (t.HIS_CHARGES, t.BUREAU_ACCOUNTS, t.BINDING_COMMANDS, t.SMS_UPLINK))]


@dataclass(frozen=True)
class Acl:
    principal: str
    operations: frozenset[str]
    kind: str            # topic | group
    name: str
    prefixed: bool

    def covers(self, kind: str, name: str) -> bool:
        return kind == self.kind and (name.startswith(self.name) if self.prefixed else name == self.name)


def script_commands(*args: str) -> list[list[str]]:
    """The argument lists the script passes to kafka-acls.sh, one per command (a stand-in prints
    them, separated by \\x1f)."""
    with tempfile.TemporaryDirectory() as folder:
        stand_in = Path(folder) / "kafka-acls.sh"
        stand_in.write_text("#!/bin/bash\nprintf '%s\\037' \"$@\"; echo\n")
        stand_in.chmod(0o755)
        done = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, check=True,
                              env={**os.environ, "KAFKA_ACLS": str(stand_in), "BOOTSTRAP": "kafka:9092",
                                   "COMMAND_CONFIG": "/tmp/admin.properties"})
    return [line.split("\x1f")[:-1] for line in done.stdout.splitlines()]


def acls(*args: str) -> list[Acl]:
    found = []
    for argv in script_commands(*args):
        assert " ".join(argv[:5]) == f"{ADMIN} --add", argv
        options = list(zip(argv[5::2], argv[6::2]))
        principal = dict(options)["--allow-principal"].removeprefix("User:")
        operations = frozenset(v for k, v in options if k == "--operation")
        prefixed = dict(options).get("--resource-pattern-type") == "prefixed"
        found += [Acl(principal, operations, k.removeprefix("--"), v, prefixed)
                  for k, v in options if k in ("--topic", "--group")]
    return found


def allowed(rules: list[Acl], principal: str, operation: str, kind: str, name: str) -> bool:
    return any(a.principal == principal and operation in a.operations and a.covers(kind, name) for a in rules)


@pytest.fixture(scope="module")
def platform() -> list[Acl]:
    return acls("platform")


def test_the_platform_acls_are_the_four_services(platform):
    assert {a.principal for a in platform} == set(SERVICES)


def test_every_topic_a_service_reads_or_writes_is_allowed_it(platform):
    """From the AsyncAPI document the code generates: `<service>.receive:<channel>` needs Read,
    `<service>.send:<channel>` Write. Reply topics: any `reply.` for the services that answer, the
    gateway's own for the gateway; postings: every region's."""
    operations = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text(encoding="utf-8"))["operations"]
    checked = []
    for name, operation in operations.items():
        service, channel = name.split(".", 1)[0], operation["channel"]["$ref"].rsplit("/", 1)[1]
        if service not in SERVICES or channel == "dead_letters":
            continue
        verb = "Read" if operation["action"] == "receive" else "Write"
        if channel == "reply_to":
            topic = "reply.gateway.gw-1" if service == "gateway" else "reply.H61010300001.results"
        elif channel.startswith(t.BUREAU_POSTINGS):
            topic = t.bureau_postings("610100")
        else:
            topic = channel
        assert allowed(platform, service, verb, "topic", topic), f"{service} may not {verb} {topic} ({name})"
        checked.append(name)
    assert len(checked) > 20


def test_each_service_may_create_the_topics_it_writes_and_reads(platform):
    """Services create their topics when missing (ensure_topics)."""
    for a in platform:
        if a.kind == "topic" and a.operations & {"Read", "Write"} and a.name != "reply.":
            assert "Create" in a.operations or any(
                b.principal == a.principal and "Create" in b.operations and b.covers("topic", a.name)
                for b in platform), a


def test_each_service_reads_with_consumer_groups_under_its_own_prefix(platform):
    for service in SERVICES:
        group = consumer_options(ServiceSettings(), service, t.BUREAU_ACCOUNTS)["group_id"]
        assert allowed(platform, service, "Read", "group", group)
        others = [s for s in SERVICES if s != service]
        assert not any(allowed(platform, other, "Read", "group", group) for other in others)


def test_dead_letters_are_written_by_the_consumers_that_make_them(platform):
    for service, consumed in (("settlement", [t.HIS_CHARGES, t.HIS_RECONCILIATION, t.BUREAU_ACCOUNTS]),
                              ("binding", [t.BINDING_COMMANDS, t.BUREAU_ACCOUNTS, t.BUREAU_DISPUTES]),
                              ("notify", [t.SETTLEMENT_RESULTS, t.BINDING_EVENTS, t.SMS_UPLINK])):
        for topic in consumed:
            assert allowed(platform, service, "Write", "topic", t.dead_letter_topic(topic)), (service, topic)


def test_only_the_gateway_and_notify_write_binding_commands(platform):
    writers = {s for s in SERVICES if allowed(platform, s, "Write", "topic", t.BINDING_COMMANDS)}
    assert writers == {"gateway", "notify"}


def test_a_bureau_writes_its_three_topics_and_reads_its_own_regions_postings_alone():
    rules = acls("bureau", "610100")
    assert {a.principal for a in rules} == {"bureau-610100"}
    written = {a.name for a in rules if "Write" in a.operations}
    assert written == {t.BUREAU_ACCOUNTS, t.BUREAU_INSTITUTIONS, t.BUREAU_DISPUTES}
    assert [(a.name, a.prefixed) for a in rules if a.kind == "topic" and "Read" in a.operations] == [
        (t.bureau_postings("610100"), False)]
    assert not allowed(rules, "bureau-610100", "Read", "topic", t.bureau_postings("610300"))


def test_a_his_writes_charges_and_reconciliation_and_reads_its_own_reply_topics_alone():
    rules = acls("his", "H61010300001")
    written = {a.name for a in rules if "Write" in a.operations}
    assert written == {t.HIS_CHARGES, t.HIS_RECONCILIATION}
    assert allowed(rules, "his-H61010300001", "Read", "topic", "reply.H61010300001.results")
    assert not allowed(rules, "his-H61010300001", "Read", "topic", "reply.H61010300002.results")
    assert not allowed(rules, "his-H61010300001", "Read", "topic", "reply.H610103000011.results")


@pytest.mark.parametrize("kind,code", [("bureau", "610100"), ("his", "H61010300001")])
def test_no_partner_may_read_an_internal_topic_or_another_regions_postings(kind, code):
    rules = acls(kind, code)
    own = {t.bureau_postings(code)} if kind == "bureau" else set()
    for topic in [*INTERNAL, *t.all_bureau_postings()]:
        if topic not in own:
            assert not any("Read" in a.operations and a.covers("topic", topic) for a in rules), (kind, topic)


def test_the_script_refuses_a_partner_without_its_code():
    done = subprocess.run(["bash", str(SCRIPT), "bureau"], capture_output=True, text=True)
    assert done.returncode != 0 and "usage" in done.stderr


# -- the copy in docs/operations.md -------------------------------------------------------------------

def rendered() -> str:
    """The commands as the operations guide shows them: the script's, per principal."""
    lines = [f'ADMIN="{ADMIN}"  # the admin (super) user\'s client properties, e.g. as docker-compose.yml writes them']
    for args, title in ((("platform",), None), (("bureau", "<region>"), "a bureau, one per region"),
                        (("his", "<institution>"), "a HIS, one per institution")):
        last = None
        for argv in script_commands(*args):
            principal = argv[argv.index("--allow-principal") + 1]
            if principal != last:
                lines += ["", f"# {title or principal.removeprefix('User:')}"]
                last = principal
            rest = argv[5:]
            resources = rest.index(next(x for x in rest if x in ("--topic", "--group", "--resource-pattern-type")))
            head, tail = " ".join(rest[:resources]), " ".join(rest[resources:])
            lines.append(f"kafka-acls.sh $ADMIN --add {head} \\\n    {tail}")
    return "\n".join(lines) + "\n"


def documented() -> str:
    text = DOC.read_text(encoding="utf-8")
    assert BEGIN in text and END in text, f"docs/operations.md lacks {BEGIN} … {END}"
    return text.split(BEGIN, 1)[1].split(END, 1)[0].removeprefix("\n```sh\n").removesuffix("```\n")


def test_the_operations_guide_shows_the_commands_the_script_runs():
    assert documented() == rendered(), "stale: run `.venv/bin/python -m tests.unit.test_kafka_acls`"


if __name__ == "__main__":
    text = DOC.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    DOC.write_text(f"{head}{BEGIN}\n```sh\n{rendered()}```\n{END}{rest.split(END, 1)[1]}", encoding="utf-8")
    print(f"kafka-acls commands written to {DOC.relative_to(ROOT)}")
