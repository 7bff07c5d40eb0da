"""HOOKLINE_LOG_FORMAT=json: every line a process writes is one JSON object, with the ids of
the objects a record is about and never a secret."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from hookline.config import Settings
from hookline.logconfig import JsonFormatter, ids
from hookline.runtime import Runtime
from tests.conftest import TEST_ENCRYPTION_KEY, Backend
from tests.delivery import factories as f
from tests.receiver import Reply
from tests.support import LiveServer


async def _disabled(rt: Runtime, hook) -> bool:  # type: ignore[no-untyped-def]
    return (await f.webhook(rt, hook)).status != "active"


async def test_a_server_with_json_logs_writes_one_object_per_line(
    runtime: Runtime, database: Backend, receiver
) -> None:
    receiver.default = Reply(410)  # the worker disables the webhook: a warning with ids
    account = await f.make_account(runtime)
    hook = await f.make_webhook(runtime, account, receiver.url + "/gone")
    env = database.env(HOOKLINE_LOG_FORMAT="json", HOOKLINE_LOG_LEVEL="info")
    server = await asyncio.to_thread(LiveServer(env).start)
    try:
        emitted = await f.emit_event(runtime, account)
        await receiver.wait_for(1)
        deadline = time.monotonic() + 15
        while not await _disabled(runtime, hook):  # another process's effect: poll it
            assert time.monotonic() < deadline, "the webhook was not disabled"
            await asyncio.sleep(0.05)
    finally:
        output = await asyncio.to_thread(server.stop)

    lines = [line for line in output.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # fails on any line that is not JSON
    assert all(isinstance(r, dict) for r in records)
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any(
        r["message"].startswith("hookline ") and " on http://" in r["message"] for r in records
    )
    (disabling,) = [r for r in records if r["message"].startswith("disabling webhook")]
    assert disabling["level"] == "warning"
    assert disabling["logger"] == "hookline.delivery.worker"
    assert (
        disabling["account_id"],
        disabling["webhook_id"],
        disabling["event_id"],
        disabling["delivery_id"],
    ) == (str(account), str(hook), str(emitted.id), str(emitted.delivery_ids[0]))
    assert TEST_ENCRYPTION_KEY not in output
    assert env["HOOKLINE_JWT_SECRET"] not in output


def test_only_known_fields_are_written() -> None:
    record = logging.LogRecord("hookline.x", logging.ERROR, __file__, 1, "sent %s", ("it",), None)
    record.__dict__.update(ids(webhook_id=None, delivery_id=None))
    record.__dict__.update({"delivery_id": "d-1", "secret": "hunter2", "headers": {"a": "b"}})
    line = JsonFormatter().format(record)
    body = json.loads(line)
    assert set(body) == {"time", "level", "logger", "message", "delivery_id"}
    assert (body["level"], body["message"], body["delivery_id"]) == ("error", "sent it", "d-1")
    assert "hunter2" not in line


def test_a_traceback_stays_on_its_one_line() -> None:
    try:
        raise ValueError("bad\nrow")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError: bad\nrow" in json.loads(line)["exception"]


def test_the_default_stays_human_readable() -> None:
    assert Settings(_env_file=None).log_format == "text"
