"""The thirteen event types of the hub, as data: names, descriptions, API and fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hookline.error_codes import ErrorCode

UUID = {"type": "string", "format": "uuid"}
NULLABLE_UUID = {"type": ["string", "null"], "format": "uuid"}
TEXT = {"type": "string", "minLength": 1}
NULLABLE_TEXT = {"type": ["string", "null"]}


@dataclass(frozen=True)
class Field:
    name: str
    schema: dict[str, Any]
    description: str
    optional: bool = False


@dataclass(frozen=True)
class EventType:
    name: str
    description: str
    api: str | None
    fields: tuple[Field, ...]
    example_fields: dict[str, Any] = field(default_factory=dict)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


def _connection(extra: tuple[Field, ...] = ()) -> tuple[Field, ...]:
    return (
        Field("connectionid", UUID, "guid of the connection on which the event occurred"),
        *extra,
    )


_CONNECTION_STATUS = Field(
    "status", {"type": "string", "enum": ["active", "inactive"]}, "active/inactive"
)
_FLOW = (
    Field("flowid", UUID, "guid of the flow on which the event occurred"),
    Field("syncid", UUID, "guid of the sync on which the event occurred"),
)
_ISSUE_BASE = (
    Field("issue_id", UUID, "guid of the consumer issue"),
    Field("connectionid", UUID, "guid of the connection on which the issue occurred"),
    Field("syncid", NULLABLE_UUID, "guid of the sync on which the issue occurred", optional=True),
    Field("error_code", TEXT, "error code of the issue"),
)
_ISSUE_OPEN = (
    *_ISSUE_BASE,
    Field("issue_status", {"type": "string", "enum": ["open"]}, "status of the issue"),
    Field("message", {"type": "string"}, "error message describing the issue"),
    Field("context", {"type": ["object", "string", "null"]}, "additional context information"),
)
_ORDER = (
    Field("order_id", TEXT, "id of the order on which the event occurred"),
    Field(
        "device_id",
        NULLABLE_TEXT,
        "id of the device on which the order was completed",
        optional=True,
    ),
    Field(
        "customer_id", NULLABLE_TEXT, "id of the customer that has made the order", optional=True
    ),
    Field("location_id", TEXT, "id of the location on which the order was completed"),
    Field("updated_at", {"type": "string", "format": "date-time"}, "time of the change"),
)

_C = "6f1b8d3e-2c4a-7b10-9e3f-0a1b2c3d4e5f"
_F = "01965d2a-7c1e-7a55-8b0e-3f9a1c2d4e6f"
_S = "01965d2a-7c1e-7a55-8b0e-3f9a1c2d4e70"
_X = "01965d2a-7c1e-7a55-8b0e-3f9a1c2d4e71"
_P = "01965d2a-7c1e-7a55-8b0e-3f9a1c2d4e72"
_I = "01965d2a-7c1e-7a55-8b0e-3f9a1c2d4e73"
_ISSUE_EXAMPLE = {
    "issue_id": _I,
    "connectionid": _C,
    "syncid": _S,
    "error_code": ErrorCode.AUTH,
    "issue_status": "open",
    "message": "The credentials were refused by the software",
    "context": {"flow": "invoices"},
}
_ORDER_EXAMPLE = {
    "order_id": "ord-10042",
    "device_id": "pos-2",
    "customer_id": None,
    "location_id": "loc-1",
    "updated_at": "2026-11-26T10:15:00Z",
}

EVENT_TYPES: tuple[EventType, ...] = (
    EventType(
        "account.connection.created",
        "Event on the creation of a new consumer's connection (you receive this event only "
        "when the connection was successfully created)",
        None,
        _connection((_CONNECTION_STATUS,)),
        {"connectionid": _C, "status": "active"},
    ),
    EventType(
        "account.connection.updated",
        "Event on the update of a consumer's connection",
        None,
        _connection((_CONNECTION_STATUS,)),
        {"connectionid": _C, "status": "inactive"},
    ),
    EventType(
        "account.connection.deleted",
        "Event on the deletion of a consumer's connection",
        None,
        _connection(),
        {"connectionid": _C},
    ),
    EventType(
        "account.connection.up",
        "Event when a local agent is correctly setup",
        None,
        _connection(),
        {"connectionid": _C},
    ),
    EventType(
        "account.connection.down",
        "Event when a local agent did not send any ping since 15 minutes",
        None,
        _connection(),
        {"connectionid": _C},
    ),
    EventType(
        "account.flow.enabled",
        "Event on the activation of a flow for a specific consumer",
        None,
        _FLOW,
        {"flowid": _F, "syncid": _S},
    ),
    EventType(
        "account.flow.disabled",
        "Event on the deactivation of a flow for a specific consumer",
        None,
        _FLOW,
        {"flowid": _F, "syncid": _S},
    ),
    EventType(
        "account.flow.executed",
        "Event on full execution of a flow (one event per consumer)",
        None,
        (
            *_FLOW,
            Field("status", {"type": "string", "enum": ["success", "error"]}, "success/error"),
            Field("executionid", UUID, "guid of the execution of the consumer flow"),
            Field("parentexecutionid", UUID, "guid of the execution of the parent flow"),
        ),
        {
            "flowid": _F,
            "syncid": _S,
            "status": "success",
            "executionid": _X,
            "parentexecutionid": _P,
        },
    ),
    EventType(
        "account.issue.created",
        "Event when a new consumer issue is raised",
        None,
        _ISSUE_OPEN,
        _ISSUE_EXAMPLE,
    ),
    EventType(
        "account.issue.updated",
        "Event when there is a new occurrence of an existing consumer issue",
        None,
        (
            *_ISSUE_OPEN,
            Field(
                "occurrences",
                {"type": "integer", "minimum": 1},
                "number of times this issue has occurred",
            ),
        ),
        {**_ISSUE_EXAMPLE, "occurrences": 2},
    ),
    EventType(
        "account.issue.closed",
        "Event when a consumer issue was closed automatically",
        None,
        (*_ISSUE_BASE, Field("issue_status", {"const": "auto_closed"}, "auto_closed")),
        {
            "issue_id": _I,
            "connectionid": _C,
            "syncid": _S,
            "error_code": ErrorCode.AUTH,
            "issue_status": "auto_closed",
        },
    ),
    EventType(
        "pos.order.completed",
        "Event when an order was completed",
        "POS",
        _ORDER,
        _ORDER_EXAMPLE,
    ),
    EventType(
        "pos.order.updated",
        "Event when the status of an order was updated",
        "POS",
        _ORDER,
        _ORDER_EXAMPLE,
    ),
)

BY_NAME: dict[str, EventType] = {event_type.name: event_type for event_type in EVENT_TYPES}
