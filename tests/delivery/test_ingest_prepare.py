"""The batch's fast preparation of an item gives exactly what the general way gives (or
defers to it), and ``encode_body`` writes exactly what ``json.dumps`` would."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hookline.catalog import EVENT_TYPES, example_for
from hookline.delivery.emit import encode_body
from hookline.delivery.ingest import BatchItem, _Batch, prepare_batch

ACCOUNT = uuid.UUID("0192f3c4-5b6a-7c8d-9e0f-1a2b3c4d5e6f")
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def _items(event_type: Any) -> list[Any]:
    """The example as a request item, and mutations of every kind around it."""
    item = {k: v for k, v in example_for(event_type).items() if k not in ("accountid", "created")}
    odd: list[Any] = [None, 1, 1.0, True, "", "x", [], {}, "0192F3C4-5B6A-7C8D-9E0F-1A2B3C4D5E6F"]
    items: list[Any] = [item, [item], "x", {**item, "extra": 1}, {**item, "created": 1}]
    items += [{**item, "requestid": key} for key in ("k", "", "x" * 201, "\x00", "\ud800", 7)]
    items += [{**item, "integrationid": value} for value in (None, 5, 2**31, True, "5")]
    items += [{**item, "consumerid": value} for value in odd]
    items.append({**item, "consumerid": "{0192f3c4-5b6a-7c8d-9e0f-1a2b3c4d5e70}"})
    for field in item:
        items.append({k: v for k, v in item.items() if k != field})
        items.extend({**item, field: value} for value in odd)
    return items


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.name)
def test_the_fast_path_agrees_with_the_general_one(event_type: Any) -> None:
    batch = _Batch(ACCOUNT, NOW, 64 * 1024)
    took_fast = 0
    for index, item in enumerate(_items(event_type)):
        general = batch.general(copy.deepcopy(item), index)
        fast = batch.fast(copy.deepcopy(item), index)
        if fast is None:
            continue
        took_fast += 1
        assert isinstance(general, BatchItem), (item, general)
        assert fast.body == general.body and list(fast.body) == list(general.body)
        assert type(fast.row.consumer_id) is uuid.UUID
        fast_row = (fast.row.payload, fast.row.consumer_id, fast.row.integration_id)
        general_row = (general.row.payload, general.row.consumer_id, general.row.integration_id)
        assert fast_row == general_row
        assert (fast.row.idempotency_key, fast.row.pos, fast.row.event) == (
            general.row.idempotency_key,
            general.row.pos,
            general.row.event,
        )
    assert took_fast >= 1  # the example itself at least


def test_a_batch_names_the_problems_of_every_item_in_order() -> None:
    item = {k: v for k, v in example_for(EVENT_TYPES[0]).items() if k != "accountid"}
    item.pop("created")
    ready, problems = prepare_batch(
        [item, {**item, "status": "nope"}, "x", {**item, "requestid": ""}],
        account_id=ACCOUNT,
        now=NOW,
        max_event_bytes=64 * 1024,
    )
    assert [r.position for r in ready] == [0]
    assert [p.split(":")[0] for p in problems] == [
        "events[1].status",
        "events[2]",
        "events[3].requestid",
    ]


def test_an_item_over_the_size_limit_is_refused() -> None:
    item = {k: v for k, v in example_for(EVENT_TYPES[0]).items() if k != "accountid"}
    item.pop("created")
    ready, problems = prepare_batch([item], account_id=ACCOUNT, now=NOW, max_event_bytes=10)
    assert ready == [] and problems == ["events[0]: larger than 10 bytes"]


_JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
_JSON = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(), _JSON, max_size=6))
def test_encode_body_is_byte_for_byte_json_dumps(body: dict[str, Any]) -> None:
    expected = json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    assert encode_body(body) == expected


def test_encode_body_keeps_the_escapes_json_writes() -> None:
    body = {"a": "\x7f", "b": "\x00\n\u00e9\ud83d\ude00", "c": 2**64, "d": "\ud800"}
    for key, value in body.items():
        one = {key: value}
        assert encode_body(one) == json.dumps(one, separators=(",", ":")).encode()
