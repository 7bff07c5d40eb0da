"""hookline's command line: serve, worker, migrate, accounts, version."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer
import uvloop
from rich.console import Console
from rich.text import Text

from hookline import __version__
from hookline.bootstrap import prepare_database
from hookline.cli import accounts as accounts_cli
from hookline.cli import demo, devtools, purge
from hookline.cli import integrations as integrations_cli
from hookline.cli.common import DatabaseOption, runtime_for
from hookline.config import Settings
from hookline.logconfig import configure_logging
from hookline.runtime import Runtime, freeze_startup_objects

app = typer.Typer(
    help="hookline: events and webhooks for integration hubs.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(accounts_cli.app, name="accounts")
app.add_typer(integrations_cli.app, name="integrations")
devtools.register(app)
demo.register(app)
purge.register(app)
console = Console()


def _setup_logging(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format)


def _announce(settings: Settings, message: str, level: int = logging.INFO) -> None:
    """A long-running command's status line: printed, or a log record with JSON logs (so
    every line of the process parses)."""
    if settings.log_format == "json":
        logging.getLogger("hookline.cli").log(level, Text.from_markup(message).plain)
    else:
        console.print(message)


@app.command()
def version() -> None:
    """Print hookline's version."""
    console.print(__version__)


@app.command()
def migrate(database_url: DatabaseOption = None) -> None:
    """Bring the database schema up to date."""
    runtime = runtime_for(database_url)

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
    no_worker: Annotated[bool, typer.Option("--no-worker", help="Serve the API only.")] = False,
) -> None:
    """Run the API, delivery workers and schedulers in one process (SQLite by default)."""
    import uvicorn

    from hookline.api.app import create_app

    settings = Settings(**({"database_url": database_url} if database_url else {}))
    _setup_logging(settings)
    runtime = Runtime.create(settings)
    uvloop.run(_migrate_and_release(runtime))
    server_app = create_app(runtime, run_background=settings.run_worker and not no_worker)
    config = uvicorn.Config(
        server_app,
        host=host or settings.host,
        port=port or settings.port,
        loop="uvloop",
        log_level=settings.log_level,
        # JSON logs: uvicorn's records go through the root handler like every other.
        **({"log_config": None} if settings.log_format == "json" else {}),
        access_log=False,
        proxy_headers=False,
    )
    _announce(
        settings,
        f"hookline {__version__} on http://{config.host}:{config.port} "
        f"({runtime.db.dialect}: {_redacted(runtime.db.url)})",
    )
    uvicorn.Server(config).run()


@app.command()
def worker(
    database_url: DatabaseOption = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve /metrics, /healthz and /readyz on this port. Overrides "
            "HOOKLINE_WORKER_METRICS_PORT (default: no endpoint)."
        ),
    ] = None,
) -> None:
    """Run delivery workers and schedulers without the API (for PostgreSQL deployments)."""
    from hookline.background import BackgroundServices
    from hookline.delivery.emit import rehearse_emit
    from hookline.delivery.metrics_http import start_metrics_server

    overrides: dict[str, object] = {"database_url": database_url} if database_url else {}
    if metrics_port is not None:
        overrides["worker_metrics_port"] = metrics_port
    settings = Settings(**overrides)
    _setup_logging(settings)
    runtime = Runtime.create(settings)
    if runtime.db.is_sqlite:
        _announce(
            settings,
            "[yellow]note:[/yellow] on SQLite, `hookline serve` already runs the "
            "worker; run separate workers only against PostgreSQL.",
            logging.WARNING,
        )

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
                endpoint = await start_metrics_server(
                    runtime, settings.worker_metrics_host, settings.worker_metrics_port
                )
            except OSError as error:
                await runtime.db.dispose()
                _announce(
                    settings,
                    f"[red]error:[/red] cannot serve metrics on "
                    f"{settings.worker_metrics_host}:{settings.worker_metrics_port}:"
                    f" {error.strerror or error}",
                    logging.ERROR,
                )
                raise typer.Exit(1) from None
        await services.start()
        freeze_startup_objects()
        where = (
            f"; metrics on http://{settings.worker_metrics_host}:"
            f"{settings.worker_metrics_port}/metrics"
            if endpoint
            else ""
        )
        _announce(settings, f"hookline worker running ({runtime.db.dialect}){where}")
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


def _redacted(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


if __name__ == "__main__":
    app()
