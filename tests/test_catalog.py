"""The event catalog: thirteen types, schemas that accept their examples and reject bad bodies."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from hookline.catalog import (
    EVENT_TYPES,
    InvalidEventBody,
    UnknownEventType,
    example_for,
    schema_for,
    validate_body,
)

SEED = Path(__file__).resolve().parents[2] / "shared" / "seed" / "events-table.md"
EXPECTED = {
    "account.connection.created": None,
    "account.connection.updated": None,
    "account.connection.deleted": None,
    "account.connection.up": None,
    "account.connection.down": None,
    "account.flow.enabled": None,
    "account.flow.disabled": None,
    "account.flow.executed": None,
    "account.issue.created": None,
    "account.issue.updated": None,
    "account.issue.closed": None,
    "pos.order.completed": "POS",
    "pos.order.updated": "POS",
}


def test_catalog_has_exactly_the_thirteen_documented_types() -> None:
    assert {t.name: t.api for t in EVENT_TYPES} == EXPECTED


@pytest.mark.skipif(not SEED.exists(), reason="shared/seed not beside this checkout")
def test_catalog_matches_the_seed_table_names_apis_and_fields() -> None:
    by_name = {t.name: t for t in EVENT_TYPES}
    rows = [line for line in SEED.read_text().splitlines() if line.startswith("| ")]
    assert len(rows) == 13
    for row in rows:
        name, _description, api, fields = [cell.strip() for cell in row.strip("|").split(" | ")]
        event_type = by_name[name]
        assert (event_type.api or "/") == api
        seed_fields = re.findall(r'"(\w+)":', fields)
        # The SPEC adds ``status`` to account.connection.created; otherwise the seed is exact.
        extras = ["status"] if name == "account.connection.created" else []
        assert list(event_type.field_names) == seed_fields + extras


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.name)
def test_every_example_validates(event_type) -> None:
    validate_body(example_for(event_type))


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.name)
def test_schema_requires_common_fields_and_forbids_extras(event_type) -> None:
    schema = schema_for(event_type)
    assert schema["required"][:4] == ["accountid", "event", "consumerid", "created"]
    assert schema["additionalProperties"] is False
    for missing in schema["required"]:
        if missing == "event":
            continue  # without its name a body has no schema: see the unknown-type test
        body = example_for(event_type)
        del body[missing]
        with pytest.raises(InvalidEventBody, match=missing):
            validate_body(body)


def test_optional_fields_are_nullable_but_present() -> None:
    body = example_for(next(t for t in EVENT_TYPES if t.name == "pos.order.completed"))
    body["device_id"] = None
    body["customer_id"] = None
    validate_body(body)
    del body["device_id"]
    with pytest.raises(InvalidEventBody, match="device_id"):
        validate_body(body)


@pytest.mark.parametrize(
    ("event", "change", "message"),
    [
        ("account.connection.updated", {"status": "broken"}, "status"),
        ("account.flow.executed", {"status": "done"}, "status"),
        ("account.flow.executed", {"executionid": "not-a-uuid"}, "executionid"),
        ("account.issue.closed", {"issue_status": "open"}, "issue_status"),
        ("account.issue.updated", {"occurrences": 0}, "occurrences"),
        ("account.connection.created", {"created": "yesterday"}, "created"),
        ("account.connection.created", {"surprise": 1}, "surprise"),
    ],
)
def test_malformed_bodies_are_rejected(event: str, change: dict, message: str) -> None:
    body = copy.deepcopy(example_for(next(t for t in EVENT_TYPES if t.name == event)))
    body.update(change)
    with pytest.raises(InvalidEventBody) as error:
        validate_body(body)
    assert any(message in problem for problem in error.value.errors)


def test_unknown_event_type_is_rejected() -> None:
    with pytest.raises(UnknownEventType):
        validate_body({"event": "account.nothing.happened"})
    with pytest.raises(UnknownEventType):
        validate_body({"accountid": "x"})


_ODD_VALUES: list[object] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    1.0,
    1.5,
    -0.5,
    2**70,
    "",
    "x",
    " ",
    "0",
    "true",
    [],
    {},
    ["a"],
    {"a": 1},
    "0192F3C4-5B6A-7C8D-9E0F-1A2B3C4D5E6F",
    "{0192f3c4-5b6a-7c8d-9e0f-1a2b3c4d5e6f}",
    "0192f3c45b6a7c8d9e0f1a2b3c4d5e6f",
    "urn:uuid:0192f3c4-5b6a-7c8d-9e0f-1a2b3c4d5e6f",
    "0192f3c4-5b6a-7c8d-9e0f-1a2b3c4d5e6",
    "0192f3c4-5b6a-7c8d-9e0f-1a2b3c4d5e6fa",
    "0192f3c4-5b6a-7c8d-9e0f-1a2b-3c4d5e6f",
    "0192f3c4-5b6a-7c8d-9e0f-1a2b3c4d5e6f\n",
    "2026-11-26T10:00:00Z\n",
    "\uff12\uff10\uff12\uff16-11-26T10:00:00Z",  # full-width digits
    "2026-11-26T10:00:00Z",
    "2026-11-26T10:00:00+01:00",
    "2026-11-26 10:00:00",
    "2026-11-26",
    "2026-13-40T25:61:61Z",
    "not a date",
    "active",
    "ACTIVE",
]


def _mutations(event_type: Any) -> list[dict[str, Any]]:
    example = example_for(event_type)
    bodies = [example, {**example, "extra": 1}, {**example, "event": "pos.order.updated"}]
    for field in example:
        bodies.append({k: v for k, v in example.items() if k != field})
        bodies.extend({**example, field: value} for value in _ODD_VALUES)
    return bodies


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.name)
def test_compiled_check_never_accepts_what_jsonschema_rejects(event_type) -> None:
    """The compiled fast path may only be stricter: it accepts a body only if jsonschema
    (which decides and words the errors) accepts it too, and it accepts the examples."""
    from jsonschema import Draft202012Validator, FormatChecker

    from hookline.catalog.schemas import is_valid_fast

    reference = Draft202012Validator(schema_for(event_type), format_checker=FormatChecker())
    accepted = 0
    for body in _mutations(event_type):
        if is_valid_fast(event_type.name, copy.deepcopy(body)):
            accepted += 1
            assert reference.is_valid(body), body
    assert is_valid_fast(event_type.name, example_for(event_type))
    assert accepted < len(_mutations(event_type)) / 2  # the check does reject things


def test_a_body_the_compiled_check_rejects_gets_jsonschemas_full_error_list() -> None:
    body = {**example_for(EVENT_TYPES[0]), "consumerid": "nope", "created": -1}
    with pytest.raises(InvalidEventBody) as raised:
        validate_body(body)
    assert len(raised.value.errors) == 2
    assert any(error.startswith("consumerid:") for error in raised.value.errors)
    assert any(error.startswith("created:") for error in raised.value.errors)
