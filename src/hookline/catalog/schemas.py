"""JSON Schemas of full event bodies, and the validator every emitted body goes through.

Every body is checked first by a validator compiled to Python code (fastjsonschema): about
ten times cheaper than interpreting the schema, which mattered at hundreds of events a
second. It stops at the first problem and words it its own way, so a body it rejects is
judged again by jsonschema, which alone decides and lists every problem. The compiled check
is never more lenient (its uuid format is the canonical form only, its date-time format is
checked always): a test compares the two on mutated bodies of every event type.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any

import fastjsonschema
from jsonschema import Draft202012Validator, FormatChecker

from hookline.catalog.types import BY_NAME, EVENT_TYPES, EventType

COMMON_FIELDS: dict[str, dict[str, Any]] = {
    "accountid": {"type": "string", "format": "uuid", "description": "guid of the account"},
    "consumerid": {"type": "string", "format": "uuid", "description": "guid of the consumer"},
    "created": {"type": "integer", "minimum": 0, "description": "Unix time in seconds"},
}


class UnknownEventType(KeyError):
    pass


class InvalidEventBody(ValueError):
    """A body that does not match its event type's schema; ``errors`` lists each problem."""

    def __init__(self, event: str, errors: list[str]) -> None:
        super().__init__(f"invalid body for {event}: " + "; ".join(errors))
        self.event = event
        self.errors = errors


def schema_for(event_type: EventType) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "accountid": COMMON_FIELDS["accountid"],
        "event": {"const": event_type.name},
        "consumerid": COMMON_FIELDS["consumerid"],
        "created": COMMON_FIELDS["created"],
    }
    for field in event_type.fields:
        properties[field.name] = {**field.schema, "description": field.description}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:hookline:event:{event_type.name}",
        "title": event_type.name,
        "description": event_type.description,
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def example_for(event_type: EventType) -> dict[str, Any]:
    return {
        "accountid": "0192f3c4-5b6a-7c8d-9e0f-1a2b3c4d5e6f",
        "event": event_type.name,
        "consumerid": "0192f3c4-5b6a-7c8d-9e0f-1a2b3c4d5e70",
        "created": 1764151200,
        **event_type.example_fields,
    }


@cache
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(schema_for(BY_NAME[name]), format_checker=FormatChecker())


def get_event_type(name: str) -> EventType:
    try:
        return BY_NAME[name]
    except KeyError:
        raise UnknownEventType(name) from None


_CANONICAL_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


@cache
def _compiled_check(name: str) -> Callable[[Any], Any]:
    # The schemas use only keywords that draft 7 (the newest fastjsonschema knows) and
    # 2020-12 read alike: type, properties, required, additionalProperties, const, enum,
    # format, minLength, minimum.
    schema = {**schema_for(BY_NAME[name]), "$schema": "http://json-schema.org/draft-07/schema#"}
    check: Callable[[Any], Any] = fastjsonschema.compile(
        schema, formats={"uuid": _CANONICAL_UUID.pattern}
    )
    return check


def is_valid_fast(name: str, body: Any) -> bool:
    """True when the compiled check of event type ``name`` accepts ``body``."""
    try:
        _compiled_check(name)(body)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def validate_body(body: dict[str, Any]) -> None:
    """Raise :class:`InvalidEventBody` (or :class:`UnknownEventType`) unless ``body`` is valid."""
    name = body.get("event")
    if not isinstance(name, str) or name not in BY_NAME:
        raise UnknownEventType(str(name))
    if is_valid_fast(name, body):
        return
    errors = sorted(_validator(name).iter_errors(body), key=lambda error: list(error.path))
    if errors:
        raise InvalidEventBody(name, [_describe(error) for error in errors])


def _describe(error: Any) -> str:
    where = ".".join(str(part) for part in error.path) or "body"
    return f"{where}: {error.message}"


def all_schemas() -> list[dict[str, Any]]:
    return [
        {
            "event": event_type.name,
            "api": event_type.api,
            "description": event_type.description,
            "schema": schema_for(event_type),
            "example": example_for(event_type),
        }
        for event_type in EVENT_TYPES
    ]
