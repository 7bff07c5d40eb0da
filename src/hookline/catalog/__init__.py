"""The event catalog: the hub's thirteen event types, their JSON Schemas and examples."""

from hookline.catalog.schemas import (
    InvalidEventBody,
    UnknownEventType,
    all_schemas,
    example_for,
    get_event_type,
    schema_for,
    validate_body,
)
from hookline.catalog.types import BY_NAME, EVENT_TYPES, EventType

__all__ = [
    "BY_NAME",
    "EVENT_TYPES",
    "EventType",
    "InvalidEventBody",
    "UnknownEventType",
    "all_schemas",
    "example_for",
    "get_event_type",
    "schema_for",
    "validate_body",
]
