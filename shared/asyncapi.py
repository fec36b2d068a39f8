"""AsyncAPI 3.0 documents generated from the code's own pydantic models, so the published
contract and the code cannot drift apart. Each service lists its channels in its asyncapi.py."""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path
from typing import Any

import yaml

from pydantic import BaseModel

from shared.envelope import Envelope


def document(title: str, description: str, channels: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """`channels`: topic -> {"key": what the Kafka key is, "action": "send"|"receive",
    "messages": {event_type: payload model}}. Actions are from the service's point of view."""
    doc: dict[str, Any] = {
        "asyncapi": "3.0.0",
        "info": {"title": title, "version": "1", "description": description},
        "channels": {}, "operations": {}, "components": {"messages": {}, "schemas": {}},
    }
    for topic, spec in channels.items():
        refs = {}
        for event_type, model in spec["messages"].items():
            doc["components"]["messages"][event_type] = _message(event_type, model, spec["key"], doc)
            refs[event_type] = {"$ref": f"#/components/messages/{event_type}"}
        doc["channels"][topic] = {"address": topic, "description": f"Kafka key: {spec['key']}.", "messages": refs}
        doc["operations"][f"{spec['action']}:{topic}"] = {
            "action": spec["action"], "channel": {"$ref": f"#/channels/{topic}"},
            "messages": [{"$ref": f"#/channels/{topic}/messages/{name}"} for name in refs]}
    return doc


def name_messages(doc: dict[str, Any], channels: dict[tuple[str, str], tuple[str, list[str]]]) -> dict[str, Any]:
    """Channels whose messages another service owns: (action, topic) -> (what the key is, event
    types), each message named by its event type only. The platform document resolves the names
    to the owning service's definitions, so each message is defined once, by its owner."""
    for (action, topic), (key, event_types) in channels.items():
        refs = {name: {"$ref": f"#/components/messages/{name}"} for name in event_types}
        channel = doc["channels"].setdefault(topic, {"address": topic, "description": f"Kafka key: {key}.",
                                                     "messages": {}})
        channel["messages"].update(refs)
        doc["operations"][f"{action}:{topic}"] = {
            "action": action, "channel": {"$ref": f"#/channels/{topic}"},
            "messages": [{"$ref": f"#/channels/{topic}/messages/{name}"} for name in refs]}
    return doc


def _message(event_type: str, model: type[BaseModel], key: str, doc: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
    doc["components"]["schemas"].update(schema.pop("$defs", {}))
    doc["components"]["schemas"][model.__name__] = schema
    envelope = Envelope.model_json_schema(mode="serialization")
    envelope["properties"]["event_type"] = {"const": event_type}
    envelope["properties"]["payload"] = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"name": event_type, "title": event_type, "contentType": "application/json",
            "bindings": {"kafka": {"key": {"type": "string", "description": key}}}, "payload": envelope}


def dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, indent=2)


# -- One document for the whole platform (docs/asyncapi.yaml, `make asyncapi`) ------------------

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"
PLATFORM_DESCRIPTION = (
    "Every Kafka topic, event type and field of the platform's public contract, generated from the "
    "services' own pydantic models (`make asyncapi`), so this document and the code cannot drift apart.\n\n"
    "Every message value is one UTF-8 JSON envelope: `event_id` (unique per message, kept on "
    "redelivery), `event_type`, `schema_version`, `occurred_at` (ISO 8601 with offset) and `payload`. "
    "Amounts are strings of yuan with at most two decimals; dates `YYYY-MM-DD`; regions 6-digit codes.\n\n"
    "A message whose envelope can be read (JSON object, `event_id`, known `event_type`) always gets an "
    "answer on the outcome topic; one that cannot goes to `<topic>.dlq` with its original bytes. A "
    "request may ask for its answer also on `reply.<name>` (headers `reply_to`, `correlation_id`).")


def service_documents() -> dict[str, dict[str, Any]]:
    """Each service's own document, found by convention: every `services/<name>/asyncapi.py`
    with a function `<name>_document()`. A service added later is picked up without editing this."""
    found = {}
    for folder in sorted(p for p in SERVICES_DIR.iterdir() if (p / "asyncapi.py").is_file()):
        module = importlib.import_module(f"services.{folder.name}.asyncapi")
        make = getattr(module, f"{folder.name}_document", None)
        if make is None:
            raise LookupError(f"services/{folder.name}/asyncapi.py has no {folder.name}_document()")
        found[folder.name] = make()
    return found


def platform_document(documents: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The services' documents merged: a channel lists every message any service sends or receives
    on it; an operation says which service does what. The same schema name meaning two different
    things in two services is an error, not something to paper over."""
    documents = _qualify_clashing_schemas(service_documents() if documents is None else documents)
    doc: dict[str, Any] = {
        "asyncapi": "3.0.0",
        "info": {"title": "Shaanxi family mutual aid (跨统筹区职工医保个人账户家庭共济)", "version": "2",
                 "description": PLATFORM_DESCRIPTION},
        "defaultContentType": "application/json",
        "servers": {"kafka": {"host": "kafka:9092", "protocol": "kafka",
                              "description": "The broker of docker-compose.yml; KAFKA_BOOTSTRAP_SERVERS elsewhere."}},
        "channels": {}, "operations": {}, "components": {"messages": {}, "schemas": {}},
    }
    keys: dict[str, str] = {}
    for service, own in documents.items():
        for name, channel in own["channels"].items():
            merged = doc["channels"].setdefault(name, {"address": channel["address"], "messages": {}})
            merged["messages"].update(channel["messages"])
            key = channel.get("description", "")
            keys[name] = max(keys.get(name, ""), key, key=lambda text: (len(text), text))
        for op_id, operation in own["operations"].items():
            verb = "receives from" if operation["action"] == "receive" else "sends to"
            topic = operation["channel"]["$ref"].rsplit("/", 1)[1]
            doc["operations"][f"{service}.{op_id}"] = {**operation, "summary": f"The {service} service {verb} {topic}."}
        for name, message in own["components"]["messages"].items():
            _merge_component(doc["components"]["messages"], name, message, service, ignore=("bindings", "headers"))
            if "headers" in message:  # contract version 3: a reader that checks the signature documents its headers
                doc["components"]["messages"][name].setdefault("headers", copy.deepcopy(message["headers"]))
        for name, schema in own["components"]["schemas"].items():
            _merge_component(doc["components"]["schemas"], name, schema, service)
    for name, channel in doc["channels"].items():
        channel["description"] = keys[name]
        if name == "reply_to":  # a reply keeps its request's key; the message's own topic says what that is
            continue
        for ref in channel["messages"].values():  # a message says the key of the channel it travels on
            message = doc["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]
            message["bindings"]["kafka"]["key"]["description"] = keys[name].removeprefix("Kafka key: ").rstrip(".")
    if "reply_to" in doc["channels"]:
        doc["channels"]["reply_to"].update(
            address="reply.{caller}", parameters={"caller": {"description": "At most 100 letters, digits, "
                                                             "`.`, `_` or `-`, chosen by the caller."}},
            description="The caller's own reply topic, named in the request's `reply_to` header; the answer "
                        "carries the request's `correlation_id` header. Any other `reply_to` is ignored.")
    doc["channels"]["dead_letters"] = {
        "address": "{topic}.dlq", "parameters": {"topic": {"description": "The topic the message was read from."}},
        "description": "What a consumer cannot answer (not JSON, no event_id, unknown event_type), and messages "
                       "a platform defect or a bureau event's lack of authority kept from being applied.",
        "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}}}
    doc["components"]["messages"]["DeadLetter"] = {
        "name": "DeadLetter", "title": "DeadLetter", "contentType": "application/octet-stream",
        "summary": "The original bytes and key, unchanged; why and where from in the headers.",
        "headers": {"type": "object", "properties": {
            "dlq-error": {"type": "string", "maxLength": 500, "description": "Why it was not answered."},
            "dlq-topic": {"type": "string"}, "dlq-partition": {"type": "string"},
            "dlq-offset": {"type": "string"}}},
        "payload": {"description": "The message value exactly as received."}}
    return doc


def _qualify_clashing_schemas(documents: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Two services may each have a model of the same name meaning different things (binding's
    and settlement's `Reason` enums): each such schema takes its service's name as a prefix."""
    versions: dict[str, list[str]] = {}
    for own in documents.values():
        for name, schema in own["components"]["schemas"].items():
            text = json.dumps(schema, sort_keys=True)
            if text not in versions.setdefault(name, []):
                versions[name].append(text)
    clashing = sorted(name for name, texts in versions.items() if len(texts) > 1)
    qualified = {}
    for service, own in documents.items():
        text = json.dumps(own, ensure_ascii=False)
        for name in clashing:
            if name in own["components"]["schemas"]:
                text = text.replace(f'"#/components/schemas/{name}"',
                                    f'"#/components/schemas/{service.title()}{name}"')
        own = json.loads(text)
        own["components"]["schemas"] = {
            (f"{service.title()}{name}" if name in clashing else name): schema
            for name, schema in own["components"]["schemas"].items()}
        qualified[service] = own
    return qualified


def _merge_component(into: dict[str, Any], name: str, value: dict[str, Any], service: str,
                     ignore: tuple[str, ...] = ()) -> None:
    if name in into and _without(into[name], ignore) != _without(value, ignore):
        raise ValueError(f"{service} defines {name!r} differently from another service")
    into.setdefault(name, copy.deepcopy(value))


def _without(value: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k not in keys}


def signature_headers(signers: str, examples: list[str]) -> dict[str, Any]:
    """The headers of a signed message (contract version 3) as a message's `headers` schema;
    `signers`: whose keys sign on this channel, with `examples` of their key ids."""
    from shared import signing

    return {"type": "object", "required": list(signing.SIGNATURE_HEADERS),
            "description": "Contract version 3: the sender's Ed25519 signature over `fma-sig-v1\\n` + topic + `\\n` "
                           "+ message key + `\\n` + signer + `\\n` + value, exactly as sent (docs/partners.md).",
            "properties": {
                signing.SIGNER: {"type": "string", "pattern": signing.KEY_ID_PATTERN,
                                 "description": f"The signing key's id: {signers}.", "examples": examples},
                signing.ALGORITHM: {"const": signing.ED25519},
                signing.SIGNATURE: {"type": "string", "contentEncoding": "base64",
                                    "description": "base64 of the 64-byte Ed25519 signature."}}}


def platform_yaml() -> str:
    """docs/asyncapi.yaml's text: stable for the same code (keys in the order the code gives them)."""
    header = "# Generated by `make asyncapi` (python -m shared.asyncapi) from the code: do not edit.\n"
    return header + yaml.safe_dump(platform_document(), allow_unicode=True, sort_keys=False, width=100)


if __name__ == "__main__":
    import sys

    text = platform_yaml()
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
