"""``hookline accounts``: accounts and their API keys (create, list, add, revoke)."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hookline.cli.common import DatabaseOption, fail, on_database

if TYPE_CHECKING:
    from hookline.platform.accounts import NewApiKey
    from hookline.runtime import Runtime

app = typer.Typer(help="Manage accounts and their API keys.", no_args_is_help=True)
console = Console()
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


@app.command("create")
def create(name: str, as_json: JsonOption = False, database_url: DatabaseOption = None) -> None:
    """Create an account and print its API key; the secret is shown only this once."""
    from hookline.platform.accounts import create_account

    async def work(runtime: Runtime) -> NewApiKey:
        async with runtime.db.transaction() as conn:
            return await create_account(conn, name, now=runtime.clock.now())

    _show_new_key(
        on_database(database_url, work, migrate=True), f"account {name!r} created", as_json
    )


@app.command("list")
def list_(database_url: DatabaseOption = None) -> None:
    """List accounts."""
    from hookline.platform.accounts import list_accounts

    async def work(runtime: Runtime) -> list[Any]:
        async with runtime.db.read() as conn:
            return await list_accounts(conn)

    table = Table("accountId", "name", "created")
    for account in on_database(database_url, work, migrate=True):
        table.add_row(str(account.id), account.name, account.created_at.isoformat())
    console.print(table)


@app.command("add-key")
def add_key(
    account_id: str,
    name: Annotated[str | None, typer.Option(help="A label for the key.")] = None,
    as_json: JsonOption = False,
    database_url: DatabaseOption = None,
) -> None:
    """Add an API key to an account (to rotate: add one, switch over, revoke the old one)."""
    from hookline.platform.accounts import create_api_key, list_accounts

    account = _account_id(account_id)
    if name is not None and not name.strip():
        fail("the key's --name must not be blank (leave it out for no label)", code=2)

    async def work(runtime: Runtime) -> NewApiKey | None:
        async with runtime.db.transaction() as conn:
            if account not in {item.id for item in await list_accounts(conn)}:
                return None
            return await create_api_key(conn, account, now=runtime.clock.now(), name=name)

    key = on_database(database_url, work, migrate=True)
    if key is None:
        console.print(f"[red]error:[/red] no account {account_id}")
        raise typer.Exit(1)
    _show_new_key(key, "API key added", as_json)


@app.command("keys")
def keys(account_id: str, database_url: DatabaseOption = None) -> None:
    """List an account's API keys (client ids and labels; secrets are never stored)."""
    from hookline.platform.accounts import list_api_keys

    account = _account_id(account_id)

    async def work(runtime: Runtime) -> list[Any]:
        async with runtime.db.read() as conn:
            return await list_api_keys(conn, account)

    table = Table("clientId", "name", "created")
    for key in on_database(database_url, work):
        table.add_row(key.client_id, key.name or "", key.created_at.isoformat())
    console.print(table)


@app.command("revoke-key")
def revoke_key(client_id: str, database_url: DatabaseOption = None) -> None:
    """Revoke an API key: no new tokens, its dashboard sessions end (issued tokens expire)."""
    from hookline.platform.accounts import revoke_api_key

    async def work(runtime: Runtime) -> uuid.UUID | None:
        async with runtime.db.transaction() as conn:
            return await revoke_api_key(conn, client_id)

    account = on_database(database_url, work)
    if account is None:
        console.print(f"[red]error:[/red] no API key {client_id}")
        raise typer.Exit(1)
    console.print(f"revoked API key {client_id} of account {account}")


def _show_new_key(key: NewApiKey, title: str, as_json: bool) -> None:
    shown = {
        "accountId": str(key.account_id),
        "clientId": key.client_id,
        "clientSecret": key.client_secret,
    }
    if as_json:
        typer.echo(json.dumps(shown))
        return
    table = Table(title=title, show_header=False)
    for field, value in shown.items():
        table.add_row(field, value)
    console.print(table)
    console.print("[yellow]Store the clientSecret now: it is not shown again.[/yellow]")


def _account_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        console.print(f"[red]error:[/red] not an account id: {text!r}")
        raise typer.Exit(2) from None
