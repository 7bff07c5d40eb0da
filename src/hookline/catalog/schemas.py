"""JSON Schemas of full event bodies, and the validator every emitted body goes through.

Every body is checked first by a predicate compiled to Python code from its type's schema
(:func:`compiled_check`): one function of plain comparisons per event type, a few times
cheaper than fastjsonschema's general code and far cheaper than interpreting the schema,
which matters at tens of thousands of events a second (``POST /events/batch``). It only
answers yes or no, so a body it rejects is judged again by jsonschema, which alone decides
and lists every problem. The compiled check is never more lenient (its uuid format is the
canonical form only, its date-time format is checked always, ``integer`` excludes ``1.0``):
a test compares the two on mutated bodies of every event type. A schema using a keyword the
compiler does not know is checked by fastjsonschema instead.
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


# fastjsonschema's date-time, digits in ASCII only (``\\d`` alone matches any script's).
_DATE_TIME = re.compile(
    r"^\d{4}-[01]\d-[0-3]\d(t|T)[0-2]\d:[0-5]\d:[0-5]\d(?:\.\d+)?"
    r"(?:[+-][0-2]\d:[0-5]\d|[+-][0-2]\d[0-5]\d|z|Z)\Z",
    re.ASCII,
)
# The canonical uuid, up to the very end (``$`` would let a trailing newline through).
_UUID_EXACT = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
)
_FORMATS = {"uuid": "UUID_MATCH", "date-time": "DATE_TIME_MATCH"}
_KNOWN_KEYWORDS = {"type", "format", "const", "enum", "minLength", "minimum", "description"}


@cache
def field_names(name: str) -> tuple[str, ...]:
    """The body fields of event type ``name`` after the common ones, in documented order."""
    return get_event_type(name).field_names


@cache
def compiled_check(name: str) -> Callable[[Any], bool]:
    """The yes-or-no check of a full body of event type ``name`` (see the module's
    docstring): ``check(body)`` is True only for a body jsonschema accepts too."""
    schema = schema_for(get_event_type(name))
    try:
        return _compile(schema)
    except NotImplementedError:  # a keyword the compiler does not know: the general code
        return _fastjsonschema_check(schema)


def is_valid_fast(name: str, body: Any) -> bool:
    """True when the compiled check of event type ``name`` accepts ``body``."""
    return compiled_check(name)(body)


def _compile(schema: dict[str, Any]) -> Callable[[Any], bool]:
    properties: dict[str, dict[str, Any]] = schema["properties"]
    if schema.get("additionalProperties") is not False or set(schema["required"]) != set(
        properties
    ):
        raise NotImplementedError("only closed bodies whose every property is required")
    lines = [
        "def check(d):",
        f"    if type(d) is not dict or len(d) != {len(properties)}:",
        "        return False",
    ]
    # Every property present, and no more of them (the length): exactly the schema's keys.
    for key, rule in properties.items():
        lines += [
            f"    v = d.get({key!r}, MISSING)",
            f"    if not ({_condition(rule)}):",
            "        return False",
        ]
    lines.append("    return True")
    namespace: dict[str, Any] = {
        "MISSING": object(),
        "UUID_MATCH": _UUID_EXACT.match,
        "DATE_TIME_MATCH": _DATE_TIME.match,
    }
    exec(compile("\n".join(lines), f"<check {schema['title']}>", "exec"), namespace)
    check: Callable[[Any], bool] = namespace["check"]
    return check


def _condition(rule: dict[str, Any]) -> str:
    """A Python expression over ``v`` that holds only if ``v`` satisfies ``rule``."""
    if set(rule) - _KNOWN_KEYWORDS:
        raise NotImplementedError(f"keywords {sorted(set(rule) - _KNOWN_KEYWORDS)}")
    if "const" in rule:
        value = rule["const"]
        if set(rule) - {"const", "description"} or type(value) is not str:
            raise NotImplementedError("const: a lone string only")
        return f"type(v) is str and v == {value!r}"
    types = rule.get("type")
    kinds = [types] if isinstance(types, str) else list(types or [])
    if not kinds:
        raise NotImplementedError("a property without a type")
    alternatives = []
    for kind in kinds:
        if kind == "string":
            alternatives.append(_string_condition(rule))
        elif kind == "integer":
            minimum = rule.get("minimum")
            if minimum is not None and type(minimum) is not int:
                raise NotImplementedError("an integer minimum only")
            bound = "" if minimum is None else f" and v >= {minimum}"
            alternatives.append(f"(type(v) is int{bound})")
        elif kind == "object":
            alternatives.append("type(v) is dict")
        elif kind == "null":
            alternatives.append("v is None")
        else:
            raise NotImplementedError(f"type {kind}")
    if ("minimum" in rule and "integer" not in kinds) or (
        set(rule) & {"format", "enum", "minLength"} and "string" not in kinds
    ):
        raise NotImplementedError("a keyword for a type the property does not have")
    return " or ".join(alternatives)


def _string_condition(rule: dict[str, Any]) -> str:
    parts = ["isinstance(v, str)"]
    if "format" in rule:
        if rule["format"] not in _FORMATS:
            raise NotImplementedError(f"format {rule['format']}")
        parts.append(f"{_FORMATS[rule['format']]}(v) is not None")
    if "minLength" in rule:
        parts.append(f"len(v) >= {int(rule['minLength'])}")
    if "enum" in rule:
        values = rule["enum"]
        if not all(type(value) is str for value in values):
            raise NotImplementedError("enum: strings only")
        parts.append(f"v in {tuple(values)!r}")
    return "(" + " and ".join(parts) + ")"


def _fastjsonschema_check(schema: dict[str, Any]) -> Callable[[Any], bool]:
    # Keywords that draft 7 (the newest fastjsonschema knows) and 2020-12 read alike.
    draft7 = {**schema, "$schema": "http://json-schema.org/draft-07/schema#"}
    validate = fastjsonschema.compile(draft7, formats={"uuid": _CANONICAL_UUID.pattern})

    def check(body: Any) -> bool:
        try:
            validate(body)
        except fastjsonschema.JsonSchemaException:
            return False
        return True

    return check


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
