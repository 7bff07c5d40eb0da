"""``hookline demo``: the whole system end to end, in one process, in under a minute.

The scenario lives in :mod:`hookline.demo_scenario` (the tests run the same function); this
module only builds the runtime and prints what arrives.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hookline.bootstrap import prepare_database
from hookline.config import Settings
from hookline.demo_scenario import ALL_EVENTS, DemoDelivery, DemoResult, run_demo
from hookline.runtime import Runtime
from hookline.store.capabilities import describe_database

LOOPBACK = ["127.0.0.1/32"]
_SHOWN_FIELDS = ("connectionid", "status", "flowid", "error_code", "occurrences", "order_id")


def demo_settings(data_dir: Path, database_url: str | None = None) -> Settings:
    """Settings for a demo: the environment's, plus loopback allowed for the receiver.

    With ``database_url`` the environment's secrets are kept (a server sharing that database
    must be able to read the webhook secrets the demo writes).
    """
    base = Settings(data_dir=data_dir) if database_url is None else Settings()
    overrides: dict[str, Any] = {
        "outbound_allowlist": [*base.outbound_allowlist, *LOOPBACK],
        "delivery_poll_seconds": min(base.delivery_poll_seconds, 1.0),
    }
    if database_url is not None:
        overrides["database_url"] = database_url
    else:
        overrides["data_dir"] = data_dir
        overrides["database_url"] = None
    return base.model_copy(update=overrides)


def _line(console: Console, started: float, delivery: DemoDelivery) -> None:
    mark = "[green]✓ signed[/green]" if delivery.verified else "[red]✗ bad signature[/red]"
    details = " ".join(
        f"{name}={_short(delivery.body[name])}"
        for name in _SHOWN_FIELDS
        if delivery.body.get(name) is not None
    )
    console.print(
        f"[dim]{time.monotonic() - started:5.2f}s[/dim] "
        f"[bold cyan]{delivery.event:<27}[/bold cyan]{mark} [dim]{details}[/dim]",
        soft_wrap=True,
    )


def _short(value: Any) -> str:
    """Ids are UUIDv7: their tail tells them apart, their head is a timestamp."""
    text = str(value)
    return "…" + text[-6:] if len(text) == 36 and text.count("-") == 4 else text


def _summary(console: Console, result: DemoResult) -> None:
    table = Table(title="Deliveries by event type")
    table.add_column("event")
    table.add_column("delivered", justify="right")
    for name in ALL_EVENTS:
        count = sum(1 for item in result.deliveries if item.event == name and item.verified)
        table.add_row(name, str(count) if count else "[red]0[/red]")
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the demo command to the main app."""

    @app.command()
    def demo(
        database_url: Annotated[
            str | None,
            typer.Option(
                "--database-url",
                help="Run against this database (a development one: see the README) instead of "
                "a temporary SQLite file.",
            ),
        ] = None,
        timeout: Annotated[float, typer.Option(help="Seconds to wait for every delivery.")] = 60.0,
        keep: Annotated[
            bool, typer.Option("--keep", help="Keep the temporary data directory.")
        ] = False,
    ) -> None:
        """Create a demo account and drive activity until all 13 event types are delivered
        to a local, signature-checking receiver."""
        console = Console()
        data_dir = Path(tempfile.mkdtemp(prefix="hookline-demo-"))
        settings = demo_settings(data_dir, database_url)
        started = time.monotonic()

        async def main() -> DemoResult:
            runtime = Runtime.create(settings)
            try:
                await prepare_database(runtime)
                return await run_demo(
                    runtime,
                    timeout=timeout,
                    pace=0.25,
                    on_step=lambda text: console.print(f"[bold]▶ {text}[/bold]"),
                    on_delivery=lambda item: _line(console, started, item),
                )
            finally:
                await runtime.db.dispose()

        where = describe_database(settings.resolved_database_url) + (
            "" if database_url else " (temporary)"
        )
        console.print(f"[bold]hookline demo[/bold] on {where}")
        try:
            result = asyncio.run(main())
        finally:
            if not keep and database_url is None:
                shutil.rmtree(data_dir, ignore_errors=True)
        _summary(console, result)
        if result.missing:
            console.print(f"[red]not delivered: {', '.join(result.missing)}[/red]")
            raise typer.Exit(1)
        console.print(
            f"[green]all {len(ALL_EVENTS)} event types delivered and verified in "
            f"{time.monotonic() - started:.1f}s[/green] (account {result.account_id})"
        )
