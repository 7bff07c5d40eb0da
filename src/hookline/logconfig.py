"""Process logging: readable lines by default, one JSON object per line for log shippers.

``HOOKLINE_LOG_FORMAT=json`` writes ``{"time", "level", "logger", "message"}`` plus the ids a
log call knows (``account_id``, ``webhook_id``, ``event_id``, ``delivery_id``, passed as
``extra=``) and ``exception`` for a traceback. Only these fields are written: whatever else a
caller attaches to a record (a request, a settings object) never reaches the output, so a
secret cannot leak through an ``extra``.
"""

from __future__ import annotations

import logging
import sys
import uuid
from datetime import UTC, datetime
from typing import Literal

import orjson

ID_FIELDS = ("account_id", "webhook_id", "event_id", "delivery_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

LogFormat = Literal["text", "json"]


def ids(
    *,
    account_id: uuid.UUID | None = None,
    webhook_id: uuid.UUID | None = None,
    event_id: uuid.UUID | None = None,
    delivery_id: uuid.UUID | None = None,
) -> dict[str, str]:
    """The ``extra=`` of a log call about these objects (the ones given)."""
    given = {
        "account_id": account_id,
        "webhook_id": webhook_id,
        "event_id": event_id,
        "delivery_id": delivery_id,
    }
    return {name: str(value) for name, value in given.items() if value is not None}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ID_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                body[name] = str(value)
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            body["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(body).decode()


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """Send every log record to stderr at ``level`` or above, in ``log_format``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
