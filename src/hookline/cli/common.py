"""What the commands share: the ``--database-url`` option, one short-lived runtime per
command (disposed before the command returns), and one-line errors.

A command never shows a traceback for a mistake a user can make (an unreachable or
malformed database URL, a bad configuration file, a blank name): :func:`explain` turns the
exception into one line on stderr, naming the database without its password, and the
process exits non-zero. ``hookline --debug COMMAND`` shows the traceback instead.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from hookline.store.capabilities import database_file, describe_database

if TYPE_CHECKING:
    from hookline.config import Settings
    from hookline.runtime import Runtime

T = TypeVar("T")

DatabaseOption = Annotated[
    str | None, typer.Option("--database-url", help="Overrides HOOKLINE_DATABASE_URL.")
]
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


class CliState:
    """Process-wide facts the error handler needs: ``--debug`` and the database in use."""

    debug = False
    database: str | None = None  # description of the database the command uses


def fail(message: str, *, code: int = 1) -> NoReturn:
    """Print ``error: message`` as one line on stderr and exit with ``code``."""
    stderr.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def note(message: str) -> None:
    stderr.print(escape(message))


def settings_for(database_url: str | None = None) -> Settings:
    from hookline.config import Settings

    overrides: dict[str, Any] = {"database_url": database_url} if database_url else {}
    settings = Settings(**overrides)
    check_database_url(settings.resolved_database_url)
    CliState.database = describe_database(settings.resolved_database_url)
    return settings


def check_database_url(url: str) -> None:
    """:class:`ConfigError` for a URL that names no database hookline can use (checked
    before anything connects; the message never repeats the URL, which may hold a
    password)."""
    from urllib.parse import urlsplit

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from hookline.config import ConfigError

    where = "HOOKLINE_DATABASE_URL / --database-url"
    split = urlsplit(url)
    try:
        split.port  # noqa: B018 - parsing it is the check
        parsed = make_url(url)
    except ValueError:
        raise ConfigError(
            f"{where} is malformed: the port of host {split.hostname} is not a number "
            "(postgresql://USER[:PASSWORD]@HOST:PORT/DATABASE)"
        ) from None
    except ArgumentError:
        raise ConfigError(
            f"{where} is not a URL (postgresql://USER[:PASSWORD]@HOST:PORT/DATABASE)"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(f"{where}: {backend}:// is not supported (postgresql:// or sqlite:///)")


def runtime_for(database_url: str | None = None) -> Runtime:
    from hookline.runtime import Runtime

    return Runtime.create(settings_for(database_url))


def on_database(
    database_url: str | None, work: Callable[[Runtime], Awaitable[T]], *, migrate: bool = False
) -> T:
    """Run ``work`` against the database (migrated first when asked), then let it go, and
    say which database it was (on stderr: stdout may be JSON for a script)."""
    from hookline.bootstrap import prepare_database

    runtime = runtime_for(database_url)

    async def run() -> T:
        try:
            if migrate:
                await prepare_database(runtime)
            return await work(runtime)
        finally:
            await runtime.db.dispose()

    file = database_file(runtime.db.url)
    new = file is not None and not file.exists()
    result = asyncio.run(run())
    note(f"database: {CliState.database}" + (" (new)" if new else ""))
    return result


def explain(error: BaseException) -> str | None:
    """One line for an error a user can cause, or None for a bug (shown in full)."""
    from pydantic import ValidationError
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    from hookline.config import ConfigError
    from hookline.errors import HooklineError

    where = CliState.database or "the database"
    if isinstance(error, ConfigError):
        return str(error)
    if isinstance(error, ValidationError):
        return "; ".join(_setting_problem(item) for item in error.errors())
    if isinstance(error, HooklineError):
        detail = error.detail if isinstance(error.detail, str) else ""
        return error.message + (f" ({detail})" if detail else "")
    if isinstance(error, (ArgumentError, NoSuchModuleError)):
        return f"HOOKLINE_DATABASE_URL / --database-url cannot be used: {_first_line(error)}"
    if isinstance(error, DBAPIError):
        return f"cannot use {where}: {_first_line(error.orig or error)}"
    if isinstance(error, socket.gaierror):
        return f"cannot use {where}: unknown host ({error.strerror or error})"
    if isinstance(error, (OSError, TimeoutError)):
        reason = getattr(error, "strerror", None) or _first_line(error) or type(error).__name__
        return f"cannot use {where}: {reason}"
    if type(error).__module__.startswith("asyncpg"):
        return f"cannot use {where}: {_first_line(error)}"
    return None


def _setting_problem(item: object) -> str:
    info = dict(item)  # type: ignore[call-overload]
    name = ".".join(str(part) for part in info.get("loc", ()))
    value = info.get("input")
    shown = "" if "secret" in name or "key" in name else f" (got {value!r})"
    return f"invalid setting HOOKLINE_{name.upper()} / {name}: {info.get('msg')}{shown}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def report_and_exit(error: BaseException) -> NoReturn:
    """The top-level handler: one line and exit 1, or the traceback under ``--debug``."""
    message = None if CliState.debug else explain(error)
    if message is None:
        raise error
    stderr.print(f"[red]error:[/red] {escape(message)}")
    sys.exit(1)
