"""``hookline purge``: the retention pass on demand (or counted only, ``--dry-run``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from hookline.cli.common import DatabaseOption, on_database

if TYPE_CHECKING:
    from hookline.delivery.retention import PurgeReport
    from hookline.runtime import Runtime

console = Console(highlight=False)


def _parse_before(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date (YYYY-MM-DD) or an ISO 8601 time", param_hint="--before"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def purge(
    before: Annotated[
        str | None,
        typer.Option(
            help="Remove what was created before this date or ISO 8601 time (UTC unless it "
            "says otherwise). Default: now minus the retention (HOOKLINE_RETENTION_DAYS)."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be removed; remove nothing.")
    ] = False,
    vacuum: Annotated[
        bool,
        typer.Option(
            "--vacuum",
            help="SQLite: first convert a file made by an older hookline to incremental vacuum "
            "(rewrites the file; stop the server first).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Remove expired events, finished deliveries and attempt logs now.

    Pending and retrying deliveries, and their events, are never removed.
    """
    from hookline.delivery.retention import purge as run_purge
    from hookline.delivery.retention import retention_window

    cutoff = _parse_before(before)

    async def work(runtime: Runtime) -> tuple[PurgeReport, str | None]:
        note = None
        if vacuum:
            note = await _convert(runtime)
        moment = cutoff
        if moment is None:
            window = retention_window(runtime.settings)
            if window is None:
                raise typer.BadParameter(
                    "retention is off (HOOKLINE_RETENTION_DAYS=0): give --before",
                    param_hint="--before",
                )
            moment = runtime.clock.now() - window
        report = await run_purge(
            runtime.db,
            before=moment,
            batch_size=runtime.settings.retention_batch_size,
            dry_run=dry_run,
        )
        return report, note

    report, note = on_database(database_url, work, migrate=True)
    if note and not as_json:
        console.print(note)
    if report.skipped:
        console.print("another process is purging right now; nothing done")
        raise typer.Exit(1)
    counts = {kind.value: count for kind, count in report.removed.items()}
    if as_json:
        body = {"before": report.before.isoformat(), "dryRun": report.dry_run, **counts}
        if not report.dry_run:
            body |= {"batches": report.batches, "freedPages": report.freed_pages}
        typer.echo(json.dumps(body))
        return
    verb = "would remove" if report.dry_run else "removed"
    console.print(
        f"{verb} {counts['events']} events, {counts['deliveries']} deliveries and "
        f"{counts['attempts']} attempt logs created before {report.before.isoformat()}"
        + ("" if report.dry_run else f" ({report.batches} batches)")
    )


async def _convert(runtime: Runtime) -> str:
    from hookline.store import retention
    from hookline.store.capabilities import vacuums_incrementally

    db = runtime.db
    if not vacuums_incrementally(db):
        return "--vacuum: nothing to do on PostgreSQL (autovacuum reclaims space)"
    async with db.read() as conn:
        _, mode = await retention.sqlite_free_pages(conn)
    if mode == "incremental":
        return "--vacuum: the file already gives space back (auto_vacuum=incremental)"
    async with db.engine.connect() as conn:
        await retention.sqlite_enable_incremental_vacuum(conn)
    return "--vacuum: the file now gives space back after purges (auto_vacuum=incremental)"


def register(app: typer.Typer) -> None:
    app.command()(purge)
