"""``hookline demo``: its scenario delivers all 13 event types, correctly signed, on both
backends; the command itself runs from nothing on a temporary SQLite directory."""

from __future__ import annotations

import tempfile
from collections import Counter
from typing import Any

from sqlalchemy import func, select
from typer.testing import CliRunner

from hookline.bootstrap import prepare_database
from hookline.catalog import validate_body
from hookline.cli.main import app
from hookline.demo_scenario import ALL_EVENTS, run_demo
from hookline.runtime import Runtime
from hookline.store.tables import deliveries


async def test_the_scenario_delivers_every_event_type_signed(database: Any) -> None:
    runtime = Runtime.create(database.settings())
    await prepare_database(runtime)
    steps: list[str] = []
    try:
        result = await run_demo(runtime, timeout=30, on_step=steps.append)
        async with runtime.db.read() as conn:
            stored = (
                await conn.execute(
                    select(func.count())
                    .select_from(deliveries)
                    .where(deliveries.c.account_id == result.account_id)
                )
            ).scalar_one()
            delivered = (
                await conn.execute(
                    select(func.count())
                    .select_from(deliveries)
                    .where(
                        deliveries.c.account_id == result.account_id,
                        deliveries.c.status == "delivered",
                    )
                )
            ).scalar_one()
    finally:
        await runtime.db.dispose()

    assert result.missing == []
    assert set(result.delivered_types) == set(ALL_EVENTS)
    assert all(item.chift_signature_ok and item.standard_signature_ok for item in result.deliveries)
    for item in result.deliveries:
        validate_body(item.body)
        assert item.body["accountid"] == str(result.account_id)
        assert item.body["consumerid"] == str(result.consumer_id)
    # Every delivery the scenario caused reached the receiver (one webhook per type).
    assert stored == len(result.deliveries)
    assert len({item.webhook_id for item in result.deliveries}) == stored
    counts = Counter(item.event for item in result.deliveries)
    assert counts["account.connection.created"] == 4
    assert counts["account.connection.deleted"] == 1
    assert counts["account.connection.down"] == 1
    assert counts["account.connection.up"] == 2
    assert counts["account.flow.enabled"] == 2
    assert counts["account.flow.disabled"] == 1
    assert counts["account.flow.executed"] == 3
    assert counts["pos.order.updated"] == 6
    assert counts["pos.order.completed"] == 2
    # Issues: credentials expired, the flow failed (twice), the connector's report (twice),
    # the agent went down; each cleared later in the story.
    issue_codes = sorted(
        item.body["error_code"]
        for item in result.deliveries
        if item.event == "account.issue.created"
    )
    assert issue_codes == [
        "AGENT_DOWN",
        "CONNECTION_INACTIVE",
        "ERROR_ACCOUNTING_API",
        "ERROR_UNMAPPED_PRODUCT",
    ]
    assert counts["account.issue.updated"] == 2
    closed_codes = sorted(
        item.body["error_code"]
        for item in result.deliveries
        if item.event == "account.issue.closed"
    )
    assert closed_codes == issue_codes
    executed = [
        item.body["status"] for item in result.deliveries if item.event == "account.flow.executed"
    ]
    assert sorted(executed) == ["error", "error", "success"]
    assert steps[-1] == "waiting for the deliveries"
    assert delivered == stored


def test_the_demo_command_runs_from_nothing(tmp_path: Any, monkeypatch: Any) -> None:
    for name in ("HOOKLINE_DATABASE_URL", "HOOKLINE_DATABASE_SCHEMA", "HOOKLINE_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["demo", "--timeout", "30"])
    assert result.exit_code == 0, result.output
    assert "all 13 event types delivered and verified" in result.output
    for name in ALL_EVENTS:
        assert name in result.output
    assert not [path for path in tmp_path.iterdir() if path.name.startswith("hookline-demo-")]
