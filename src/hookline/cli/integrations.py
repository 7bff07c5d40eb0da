"""``hookline integrations add FILE`` and ``hookline integrations list``: the connector
catalog that ``GET /integrations`` serves and connections are checked against."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hookline.cli.common import CliState, DatabaseOption, note, runtime_for
from hookline.errors import HooklineError

app = typer.Typer(help="Manage the connector catalog.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)


def _load(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise typer.BadParameter(f"cannot read {path}: {error}") from None
    items = data if isinstance(data, list) else [data]
    if not items or not all(isinstance(item, dict) for item in items):
        raise typer.BadParameter(f"{path} must hold one JSON object or a list of objects")
    return items


@app.command("add")
def add(
    file: Annotated[Path, typer.Argument(help="JSON file: one integration or a list.")],
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite integrations that exist.")
    ] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Add integrations from a JSON file (all or nothing)."""
    from hookline.bootstrap import prepare_database
    from hookline.platform.integrations import add_integration, parse_integration

    items = _load(file)
    try:
        parsed = [parse_integration(item) for item in items]
    except HooklineError as error:
        err_console.print(f"[red]error:[/red] {error.message}")
        raise typer.Exit(1) from None
    runtime = runtime_for(database_url)

    async def run() -> list[bool]:
        try:
            await prepare_database(runtime)
            async with runtime.db.transaction() as conn:
                return [
                    await add_integration(conn, item, now=runtime.clock.now(), replace=replace)
                    for item in parsed
                ]
        finally:
            await runtime.db.dispose()

    try:
        created = asyncio.run(run())
    except HooklineError as error:
        err_console.print(f"[red]error:[/red] {error.message} (nothing was added)")
        raise typer.Exit(1) from None
    note(f"database: {CliState.database}")
    for item, new in zip(parsed, created, strict=True):
        console.print(f"{'added' if new else 'replaced'} {item.id} {item.name} ({item.api})")


@app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """List the connector catalog."""
    from hookline.bootstrap import prepare_database
    from hookline.platform.integrations import list_integrations

    runtime = runtime_for(database_url)

    async def run() -> list[Any]:
        try:
            await prepare_database(runtime)
            async with runtime.db.read() as conn:
                return await list_integrations(conn)
        finally:
            await runtime.db.dispose()

    found = asyncio.run(run())
    note(f"database: {CliState.database}")
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "integrationid": item.id,
                        "name": item.name,
                        "api": item.api,
                        "status": item.status,
                        "local_agent": item.local_agent,
                        "credentials": [c.as_dict() for c in item.credentials],
                    }
                    for item in found
                ]
            )
        )
        return
    table = Table("integrationid", "name", "api", "status", "local agent", "credentials")
    for item in found:
        fields = ", ".join(c.name + ("?" if c.optional else "") for c in item.credentials)
        table.add_row(
            str(item.id),
            item.name,
            item.api,
            item.status,
            "yes" if item.local_agent else "",
            fields,
        )
    console.print(table)
