"""hookline's command line: serve, worker, migrate, accounts, version."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Annotated

import typer
import uvloop
from rich.console import Console
from rich.table import Table

from hookline import __version__
from hookline.bootstrap import prepare_database
from hookline.cli import demo, devtools
from hookline.cli import integrations as integrations_cli
from hookline.config import Settings
from hookline.runtime import Runtime, freeze_startup_objects

app = typer.Typer(help="hookline: events and webhooks for integration hubs.",
                  no_args_is_help=True, add_completion=False)
accounts_app = typer.Typer(help="Manage accounts and their API keys.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")
app.add_typer(integrations_cli.app, name="integrations")
devtools.register(app)
demo.register(app)
console = Console()


def _runtime(database_url: str | None = None) -> Runtime:
    overrides = {"database_url": database_url} if database_url else {}
    return Runtime.create(Settings(**overrides))


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


DatabaseOption = Annotated[
    str | None, typer.Option("--database-url", help="Overrides HOOKLINE_DATABASE_URL.")
]


@app.command()
def version() -> None:
    """Print hookline's version."""
    console.print(__version__)


@app.command()
def migrate(database_url: DatabaseOption = None) -> None:
    """Bring the database schema up to date."""
    runtime = _runtime(database_url)

    async def run() -> None:
        try:
            await prepare_database(runtime)
        finally:
            await runtime.db.dispose()

    asyncio.run(run())
    console.print(f"[green]database is up to date[/green] ({runtime.db.dialect})")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Overrides HOOKLINE_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides HOOKLINE_PORT.")] = None,
    database_url: DatabaseOption = None,
    no_worker: Annotated[bool, typer.Option("--no-worker",
                                            help="Serve the API only.")] = False,
) -> None:
    """Run the API, delivery workers and schedulers in one process (SQLite by default)."""
    import uvicorn

    from hookline.api.app import create_app

    settings = Settings(**({"database_url": database_url} if database_url else {}))
    _setup_logging(settings.log_level)
    runtime = Runtime.create(settings)
    uvloop.run(_migrate_and_release(runtime))
    server_app = create_app(runtime, run_background=settings.run_worker and not no_worker)
    config = uvicorn.Config(
        server_app, host=host or settings.host, port=port or settings.port,
        loop="uvloop", log_level=settings.log_level, access_log=False, proxy_headers=False,
    )
    console.print(
        f"hookline {__version__} on http://{config.host}:{config.port} "
        f"({runtime.db.dialect}: {_redacted(runtime.db.url)})"
    )
    uvicorn.Server(config).run()


@app.command()
def worker(
    database_url: DatabaseOption = None,
    metrics_port: Annotated[int | None, typer.Option(
        help="Serve /metrics, /healthz and /readyz on this port. Overrides "
             "HOOKLINE_WORKER_METRICS_PORT (default: no endpoint).")] = None,
) -> None:
    """Run delivery workers and schedulers without the API (for PostgreSQL deployments)."""
    from hookline.background import BackgroundServices
    from hookline.delivery.emit import rehearse_emit
    from hookline.delivery.metrics_http import start_metrics_server

    overrides: dict[str, object] = {"database_url": database_url} if database_url else {}
    if metrics_port is not None:
        overrides["worker_metrics_port"] = metrics_port
    settings = Settings(**overrides)
    _setup_logging(settings.log_level)
    runtime = Runtime.create(settings)
    if runtime.db.is_sqlite:
        console.print("[yellow]note:[/yellow] on SQLite, `hookline serve` already runs the "
                      "worker; run separate workers only against PostgreSQL.")

    async def run() -> None:
        import signal

        await prepare_database(runtime)
        await runtime.db.connect_ahead(warm=rehearse_emit)
        services = BackgroundServices(runtime)
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        endpoint = None  # up before the first delivery it would count
        if settings.worker_metrics_port is not None:
            try:
                endpoint = await start_metrics_server(runtime, settings.worker_metrics_host,
                                                      settings.worker_metrics_port)
            except OSError as error:
                await runtime.db.dispose()
                console.print(f"[red]error:[/red] cannot serve metrics on "
                              f"{settings.worker_metrics_host}:{settings.worker_metrics_port}:"
                              f" {error.strerror or error}")
                raise typer.Exit(1) from None
        await services.start()
        freeze_startup_objects()
        where = (f"; metrics on http://{settings.worker_metrics_host}:"
                 f"{settings.worker_metrics_port}/metrics" if endpoint else "")
        console.print(f"hookline worker running ({runtime.db.dialect}){where}")
        await stopping.wait()
        if endpoint is not None:
            await endpoint.cleanup()
        await services.stop()
        await runtime.db.dispose()

    uvloop.run(run())


async def _migrate_and_release(runtime: Runtime) -> None:
    """Migrate, then drop pooled connections: they belong to this loop, not the server's."""
    try:
        await prepare_database(runtime)
    finally:
        await runtime.db.dispose()


@accounts_app.command("create")
def accounts_create(
    name: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Create an account and print its API key; the secret is shown only this once."""
    from hookline.platform.accounts import create_account

    runtime = _runtime(database_url)

    async def run() -> dict[str, str]:
        try:
            await prepare_database(runtime)
            async with runtime.db.transaction() as conn:
                key = await create_account(conn, name, now=runtime.clock.now())
            return {"accountId": str(key.account_id), "clientId": key.client_id,
                    "clientSecret": key.client_secret}
        finally:
            await runtime.db.dispose()

    result = asyncio.run(run())
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table(title=f"account {name!r} created", show_header=False)
    for key, value in result.items():
        table.add_row(key, value)
    console.print(table)
    console.print("[yellow]Store the clientSecret now: it is not shown again.[/yellow]")


@accounts_app.command("list")
def accounts_list(database_url: DatabaseOption = None) -> None:
    """List accounts."""
    from hookline.platform.accounts import list_accounts

    runtime = _runtime(database_url)

    async def run() -> list:
        try:
            async with runtime.db.read() as conn:
                return await list_accounts(conn)
        finally:
            await runtime.db.dispose()

    table = Table("accountId", "name", "created")
    for account in asyncio.run(run()):
        table.add_row(str(account.id), account.name, account.created_at.isoformat())
    console.print(table)


@accounts_app.command("add-key")
def accounts_add_key(
    account_id: str,
    name: Annotated[str | None, typer.Option(help="A label for the key.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Add an API key to an account (to rotate: add one, switch over, revoke the old one)."""
    from hookline.platform.accounts import create_api_key, list_accounts

    runtime = _runtime(database_url)
    account = _account_id(account_id)

    async def run() -> dict[str, str] | None:
        try:
            await prepare_database(runtime)
            async with runtime.db.transaction() as conn:
                if account not in {item.id for item in await list_accounts(conn)}:
                    return None
                key = await create_api_key(conn, account, now=runtime.clock.now(), name=name)
            return {"accountId": str(key.account_id), "clientId": key.client_id,
                    "clientSecret": key.client_secret}
        finally:
            await runtime.db.dispose()

    result = asyncio.run(run())
    if result is None:
        console.print(f"[red]error:[/red] no account {account_id}")
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table(title="API key added", show_header=False)
    for field, value in result.items():
        table.add_row(field, value)
    console.print(table)
    console.print("[yellow]Store the clientSecret now: it is not shown again.[/yellow]")


@accounts_app.command("keys")
def accounts_keys(account_id: str, database_url: DatabaseOption = None) -> None:
    """List an account's API keys (client ids and labels; secrets are never stored)."""
    from hookline.platform.accounts import list_api_keys

    runtime = _runtime(database_url)
    account = _account_id(account_id)

    async def run() -> list:
        try:
            async with runtime.db.read() as conn:
                return await list_api_keys(conn, account)
        finally:
            await runtime.db.dispose()

    table = Table("clientId", "name", "created")
    for key in asyncio.run(run()):
        table.add_row(key.client_id, key.name or "", key.created_at.isoformat())
    console.print(table)


@accounts_app.command("revoke-key")
def accounts_revoke_key(client_id: str, database_url: DatabaseOption = None) -> None:
    """Revoke an API key: no new tokens, its dashboard sessions end (issued tokens expire)."""
    from hookline.platform.accounts import revoke_api_key

    runtime = _runtime(database_url)

    async def run() -> object:
        try:
            async with runtime.db.transaction() as conn:
                return await revoke_api_key(conn, client_id)
        finally:
            await runtime.db.dispose()

    account = asyncio.run(run())
    if account is None:
        console.print(f"[red]error:[/red] no API key {client_id}")
        raise typer.Exit(1)
    console.print(f"revoked API key {client_id} of account {account}")


def _account_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        console.print(f"[red]error:[/red] not an account id: {text!r}")
        raise typer.Exit(2) from None


def _redacted(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


if __name__ == "__main__":
    app()
