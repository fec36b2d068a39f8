"""AsyncAPI 3.0 documents generated from the code's own pydantic models, so the published
contract and the code cannot drift apart. Each service lists its channels in its asyncapi.py."""

from __future__ import annotations

import json
from typing import Any

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
