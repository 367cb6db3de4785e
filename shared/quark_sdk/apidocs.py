"""API documents generated from code: OpenAPI per module and AsyncAPI for the event catalogue.

`quark docs` writes them to docs/api/. The event schemas come from the
`@event_type` payload models, and who publishes or consumes each event from
the module manifests, so the documents cannot drift from the code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from quark_sdk.app import QuarkModule, create_service_app
from quark_sdk.events import EVENT_CATALOGUE, CloudEvent, dead_letter_subject

ENVELOPE = "CloudEvent"


def envelope_schema() -> dict[str, Any]:
    """The CloudEvents 1.0 envelope every message is on the wire (from `quark_sdk.events.CloudEvent`)."""
    schema = CloudEvent.model_json_schema(mode="serialization")
    schema["required"] = ["specversion", *schema["required"]]  # always written (the model's default)
    schema["description"] = ("CloudEvents 1.0 structured JSON envelope (the NATS message body). `data` is the "
                             "event's payload; `traceparent` carries the W3C trace context.")
    return schema


def message_payload(type_name: str, data_schema: str) -> dict[str, Any]:
    """One message's payload: the envelope, with `type` fixed to the event type and `data` its payload model."""
    return {
        "allOf": [{"$ref": f"#/components/schemas/{ENVELOPE}"}],
        "type": "object",
        "properties": {
            "type": {"const": type_name},
            "data": {"$ref": f"#/components/schemas/{data_schema}"},
        },
        "required": ["data"],
    }


def openapi_documents(modules: list[QuarkModule]) -> dict[str, dict[str, Any]]:
    docs = {}
    for module in modules:
        app = create_service_app(module, module.settings_cls.load(env="dev"), migrate_on_start=False)
        docs[module.name] = app.openapi()
    return docs


def asyncapi_document(modules: list[QuarkModule], version: str = "0.1.0") -> dict[str, Any]:
    """AsyncAPI 3.0: one channel per event type (its NATS subject), one message per payload model."""
    manifests = {m.name: m.manifest() for m in modules}
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for type_name in sorted(EVENT_CATALOGUE):
        model = EVENT_CATALOGUE[type_name]
        key = type_name.replace(".", "_")
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            schemas[name] = sub
        schemas[key] = schema
        messages[key] = {
            "name": type_name,
            "title": type_name,
            "summary": model.description or type_name,
            "contentType": "application/cloudevents+json",
            "headers": {"$ref": "#/components/schemas/CloudEventHeaders"},
            "payload": message_payload(type_name, key),
        }
        publishers = sorted(n for n, m in manifests.items() if type_name in m.exposes.events)
        consumers = sorted(n for n, m in manifests.items() if type_name in m.consumes)
        channels[key] = {
            "address": type_name,
            "description": f"Stream QUARK_{type_name.split('.')[1].upper()}. Published by "
                           f"{', '.join(publishers) or 'no installed module'}; consumed by "
                           f"{', '.join(consumers) or 'no installed module'}.",
            "messages": {key: {"$ref": f"#/components/messages/{key}"}},
        }
        for publisher in publishers:
            operations[f"{publisher}_publishes_{key}"] = {
                "action": "send", "channel": {"$ref": f"#/channels/{key}"},
                "summary": f"{publisher} publishes {type_name} through its outbox",
            }
        for consumer in consumers:
            operations[f"{consumer}_consumes_{key}"] = {
                "action": "receive", "channel": {"$ref": f"#/channels/{key}"},
                "summary": f"{consumer} consumes {type_name} (durable pull consumer, inbox-deduplicated)",
            }
    schemas[ENVELOPE] = envelope_schema()
    schemas["CloudEventHeaders"] = {
        "type": "object",
        "description": "NATS headers set by the outbox relay.",
        "properties": {
            "Nats-Msg-Id": {"type": "string", "description": "The CloudEvent id; JetStream drops duplicates."},
            "Ce-Type": {"type": "string"},
            "traceparent": {"type": "string", "description": "W3C trace context"},
        },
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Quark events",
            "version": version,
            "description": (
                "Every message is a CloudEvents 1.0 JSON envelope (specversion, id, source, type, time, subject, "
                "datacontenttype, data, traceparent): each message's payload is that envelope, with `type` fixed "
                "and `data` the event's own schema. Subjects equal the "
                "event type; one JetStream stream per producing domain. Failed deliveries end in "
                f"`{dead_letter_subject('<service>', '<purpose>')}` (stream QUARK_DLQ)."
            ),
        },
        "defaultContentType": "application/cloudevents+json",
        "servers": {"nats": {"host": "nats:4222", "protocol": "nats", "description": "NATS JetStream"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def event_catalogue_markdown(modules: list[QuarkModule]) -> str:
    """The event catalogue as a table for people (asyncapi.yaml carries the full schemas)."""
    manifests = {m.name: m.manifest() for m in modules}
    lines = [
        "# Event catalogue",
        "",
        "Generated by `quark docs` from the payload models (`@event_type`) and the module manifests; the full",
        "schemas are in [asyncapi.yaml](asyncapi.yaml). Subject = event type; stream `QUARK_<DOMAIN>`.",
        "",
        "| event | published by | consumed by | payload | what it means |",
        "|---|---|---|---|---|",
    ]
    for type_name in sorted(EVENT_CATALOGUE):
        model = EVENT_CATALOGUE[type_name]
        publishers = sorted(n for n, m in manifests.items() if type_name in m.exposes.events)
        consumers = sorted(n for n, m in manifests.items() if type_name in m.consumes)
        fields = ", ".join(f"`{f}`" for f in model.model_fields)
        about = " ".join((model.description or "").split()).replace("|", "\\|")
        lines.append(f"| `{type_name}` | {', '.join(publishers) or '—'} | {', '.join(consumers) or '—'} | "
                     f"{fields} | {about} |")
    return "\n".join(lines) + "\n"


def write_api_docs(modules: list[QuarkModule], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, doc in openapi_documents(modules).items():
        path = out / f"{name}.openapi.json"
        path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        written.append(path)
    path = out / "asyncapi.yaml"
    path.write_text(yaml.safe_dump(asyncapi_document(modules), sort_keys=False, allow_unicode=True))
    written.append(path)
    path = out / "events.md"
    path.write_text(event_catalogue_markdown(modules))
    written.append(path)
    return written
