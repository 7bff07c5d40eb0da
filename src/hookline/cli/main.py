"""hookline's command line: serve, worker, migrate, accounts, info, version.

Errors a user can cause end in one line on stderr and a non-zero exit (see
:mod:`hookline.cli.common`); ``hookline --debug COMMAND`` shows the traceback instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Annotated, Any

import typer
import uvloop
from rich.console import Console
from rich.text import Text

from hookline import __version__
from hookline.bootstrap import prepare_database
from hookline.cli import accounts as accounts_cli
from hookline.cli import demo, devtools, purge
from hookline.cli import integrations as integrations_cli
from hookline.cli.common import (
    CliState,
    DatabaseOption,
    fail,
    note,
    report_and_exit,
    runtime_for,
    settings_for,
)
from hookline.config import Settings
from hookline.logconfig import configure_logging
from hookline.memory import cap_malloc_arenas
from hookline.runtime import Runtime, freeze_startup_objects
from hookline.store.capabilities import serves_several_processes


class HooklineApp(typer.Typer):
    """A typer app whose errors are one line (see :func:`report_and_exit`)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except Exception as error:
            report_and_exit(error)


app = HooklineApp(
    help="hookline: events and webhooks for integration hubs.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(accounts_cli.app, name="accounts")
app.add_typer(integrations_cli.app, name="integrations")
devtools.register(app)
demo.register(app)
console = Console(soft_wrap=True)


@app.callback()
def main(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")
    ] = False,
) -> None:
    """hookline: events and webhooks for integration hubs."""
    from hookline.config import unknown_variables

    CliState.debug = debug
    for warning in unknown_variables():
        note(f"warning: {warning}")


purge.register(app)


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
def info(database_url: DatabaseOption = None) -> None:
    """Show the data directory, database and config file this folder's commands use."""
    import os

    settings = settings_for(database_url)
    console.print(f"data directory: {settings.data_dir}")
    console.print(f"database: {CliState.database}")
    console.print(f"config file: {os.environ.get('HOOKLINE_CONFIG') or '(none)'}")
    console.print(f"server: http://{settings.host}:{settings.port}")


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
    console.print(f"[green]database is up to date[/green]: {CliState.database}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Overrides HOOKLINE_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides HOOKLINE_PORT.")] = None,
    database_url: DatabaseOption = None,
    no_worker: Annotated[bool, typer.Option("--no-worker", help="Serve the API only.")] = False,
    processes: Annotated[
        int,
        typer.Option(
            "--processes",
            min=1,
            help="Processes sharing the port, each with its API and (unless --no-worker) a "
            "delivery worker. PostgreSQL only.",
        ),
    ] = 1,
) -> None:
    """Run the API, delivery workers and schedulers (SQLite by default)."""
    import uvicorn

    from hookline.api.server import BoundedHeadProtocol
    from hookline.api.serving import build_app

    settings = settings_for(database_url)
    _setup_logging(settings)
    cap_malloc_arenas(settings.malloc_arena_max)
    runtime = Runtime.create(settings)
    if processes > 1 and not serves_several_processes(runtime.db):
        fail(
            f"--processes {processes} needs PostgreSQL: SQLite takes one writer at a time, so "
            "more processes would only queue on its lock (set HOOKLINE_DATABASE_URL)",
            code=2,
        )
    uvloop.run(_migrate_and_release(runtime))
    run_background = settings.run_worker and not no_worker
    options: dict[str, Any] = {
        "host": host or settings.host,
        "port": port or settings.port,
        "loop": "uvloop",
        "log_level": settings.log_level,
        "access_log": False,
        "proxy_headers": False,
        "http": BoundedHeadProtocol,  # 431 for an oversized request head
        # JSON logs: uvicorn's records go through the root handler like every other.
        **({"log_config": None} if settings.log_format == "json" else {}),
    }
    if processes == 1:
        config = uvicorn.Config(build_app(runtime, run_background=run_background), **options)
    else:
        # uvicorn's own supervisor: it binds the port once and hands the socket to each
        # child, restarts a child that dies or hangs, and on SIGTERM/SIGINT stops every
        # child gracefully. The children build their app from the environment.
        if database_url:
            os.environ["HOOKLINE_DATABASE_URL"] = database_url
        os.environ["HOOKLINE_RUN_WORKER"] = "true" if run_background else "false"
        config = uvicorn.Config(
            "hookline.api.serving:app_from_environment",
            factory=True,
            workers=processes,
            **options,
        )
    _announce(
        settings,
        f"hookline {__version__} on http://{config.host}:{config.port} ({CliState.database}"
        f"{f'; {processes} processes' if processes > 1 else ''})",
    )
    if processes == 1:
        _graceful_server_class()(config).run()
    else:
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, sockets=[config.bind_socket()]).run()


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

    settings = settings_for(database_url)
    if metrics_port is not None:
        settings = settings.model_copy(update={"worker_metrics_port": metrics_port})
    _setup_logging(settings)
    cap_malloc_arenas(settings.malloc_arena_max)
    runtime = Runtime.create(settings)
    if not serves_several_processes(runtime.db):
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
        _announce(settings, f"hookline worker running ({CliState.database}){where}")
        await stopping.wait()
        if endpoint is not None:
            await endpoint.cleanup()
        await services.stop()
        await runtime.db.dispose()
        if runtime.tracing is not None:
            runtime.tracing.shutdown()

    uvloop.run(run())


async def _migrate_and_release(runtime: Runtime) -> None:
    """Migrate, then drop pooled connections: they belong to this loop, not the server's."""
    try:
        await prepare_database(runtime)
    finally:
        await runtime.db.dispose()


def _graceful_server_class() -> Any:
    import uvicorn

    from hookline.api.routers.stream import close_streams

    class GracefulServer(uvicorn.Server):
        """uvicorn's graceful shutdown waits for every open response: end the event
        streams first (each tells its client why), or a connected `hookline listen` would
        hold the shutdown forever."""

        async def shutdown(self, sockets: list[Any] | None = None) -> None:
            await close_streams(self.config.app)
            await super().shutdown(sockets)

    return GracefulServer


if __name__ == "__main__":
    app()
