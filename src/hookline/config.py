"""Settings, read once from ``HOOKLINE_*`` environment variables and an optional TOML file.

Strict on purpose: a ``HOOKLINE_CONFIG`` file that does not exist, is not valid TOML or has a
key that is no setting is an error (:class:`ConfigError`, with the file, line and column or
the likely intended key), and :func:`unknown_variables` names ``HOOKLINE_*`` variables that
mean nothing, so a typo is never silently ignored.

The data directory is one absolute path however a command is started: ``HOOKLINE_DATA_DIR``
(a relative value is taken from the current folder), else the nearest ``.hookline`` folder
in the current folder or a parent of it that holds a database or secrets, else ``.hookline``
in the current folder. So ``hookline serve`` started in a checkout and a CLI command run
from any folder inside it use the same database.

Secrets that are not given are generated on first start and persisted (mode 0600) in the
data directory, so a restart keeps tokens and encrypted webhook secrets valid. Several hosts
sharing one PostgreSQL database must all be given the same secrets through the environment.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, FilePath, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

DEFAULT_RETRY_SCHEDULE = (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
PREFIX = "HOOKLINE_"
DATA_DIR_NAME = ".hookline"
# HOOKLINE_* variables that are not settings: the config file's name, the developer tools'
# credentials and server, and the test suite's and benchmarks' own.
OTHER_VARIABLES = frozenset(
    {
        "CONFIG",
        "URL",
        "KEY_FILE",
        "ACCOUNT_ID",
        "CLIENT_ID",
        "CLIENT_SECRET",
        "TEST_POSTGRES_URL",
        "REQUIRE_POSTGRES",
        "BENCH_POSTGRES_URL",
        "BROWSER_BACKENDS",
        "SCREENSHOTS",
        "BENCH_ROUTES",
    }
)


class ConfigError(ValueError):
    """A configuration mistake, explained in one line."""


def find_data_dir(start: Path | None = None) -> Path:
    """The nearest ``.hookline`` holding a database or secrets, from ``start`` (the current
    folder) up; ``start/.hookline`` when there is none."""
    here = (start or Path.cwd()).absolute()
    for folder in (here, *here.parents):
        candidate = folder / DATA_DIR_NAME
        if (candidate / "hookline.db").is_file() or (candidate / "secrets.json").is_file():
            return candidate
    return here / DATA_DIR_NAME


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore")

    data_dir: Path = Field(default_factory=find_data_dir)
    database_url: str | None = None
    database_schema: str | None = None  # PostgreSQL schema to live in (default: search_path)
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None
    log_level: str = "info"
    # "text" (human-readable, the default) or "json" (one object per line, for log shippers).
    log_format: Literal["text", "json"] = "text"
    # glibc malloc arenas for serve/worker processes (0: glibc's default of 8 per core);
    # see hookline.memory. A MALLOC_ARENA_MAX in the environment wins.
    malloc_arena_max: int = Field(default=2, ge=0, le=1024)

    jwt_secret: SecretStr | None = None
    encryption_key: SecretStr | None = None
    token_ttl_seconds: int = 1800
    activation_ttl_seconds: int = 1800

    # Delivery engine.
    retry_schedule: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: list[float](DEFAULT_RETRY_SCHEDULE)
    )
    retry_jitter: float = 0.1
    retry_after_max_seconds: float = 86400.0
    disable_after_failing_seconds: float = 5 * 86400.0
    outbound_allowlist: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Extra CA certificates (PEM) trusted for outbound HTTPS, beside the system's.
    outbound_ca_file: FilePath | None = None
    delivery_connect_timeout: float = 5.0
    delivery_timeout: float = 15.0
    delivery_concurrency: int = 256
    delivery_per_host_concurrency: int = 64
    delivery_batch_size: int = 100
    delivery_lease_seconds: float = 60.0
    delivery_poll_seconds: float = 5.0
    # Scheduling by destination (scheme + host + port): see delivery/destinations.py.
    delivery_slow_seconds: float = 2.0  # an attempt (or a request in flight) this long is slow
    delivery_slow_host_concurrency: int = 4  # lanes of a slow, hanging or failing destination
    circuit_failures: int = 20  # consecutive failures that open a destination's circuit
    circuit_cooldown_seconds: float = 30.0  # first cool-down; doubles on each failed probe
    circuit_max_cooldown_seconds: float = 900.0
    # PostgreSQL: a worker silent for this long is dead and its claims are released.
    delivery_takeover_seconds: float = 10.0
    response_excerpt_bytes: int = 2048
    max_event_bytes: int = 256 * 1024
    # OpenTelemetry: OTLP/HTTP base URL (``/v1/traces`` is appended); the standard OTEL_*
    # variables work too. Unset: no tracing.
    otel_exporter_otlp_endpoint: str | None = None
    max_batch_events: int = 1000  # items in one POST /events/batch
    max_batch_bytes: int = 4 * 1024 * 1024  # body of one POST /events/batch
    workers: int = 1
    run_worker: bool = True
    # `hookline worker` serves /metrics, /healthz and /readyz here when a port is set.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int | None = None

    # Live event streams (`hookline listen`).
    stream_max_per_account: int = 5  # open streams per account, in each server process
    stream_idle_seconds: float = 3600.0  # a stream that carried no event this long ends
    stream_poll_seconds: float = 1.0  # how often a stream looks for events nothing woke it for
    # Retention: events, finished deliveries and attempt logs older than this are purged
    # (0 keeps everything). ``retention_seconds``, when set, overrides the days (short
    # windows for trials and the soak benchmark).
    retention_days: float = Field(default=30.0, ge=0)
    retention_seconds: float | None = Field(default=None, ge=0)
    retention_interval_seconds: float = Field(default=60.0, gt=0)
    retention_batch_size: int = Field(default=1000, ge=1, le=10000)

    # Platform schedulers.
    agent_down_after_seconds: float = 15 * 60.0
    issue_autoclose_days: float = 7.0
    scheduler_interval_seconds: float = 15.0
    execution_timeout_seconds: float = 300.0
    # An in-process flow run (the http runner) is resumed elsewhere if its lease runs out.
    run_lease_seconds: float = 60.0

    @field_validator("retry_schedule", "outbound_allowlist", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("data_dir", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(PREFIX + "CONFIG")
        if config_file:
            values = read_config_file(Path(config_file), set(settings_cls.model_fields))
            sources.append(InitSettingsSource(settings_cls, init_kwargs=values))
        return tuple(sources)

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy async URL; plain ``postgresql://`` URLs get the asyncpg driver."""
        url = self.database_url or f"sqlite+aiosqlite:///{(self.data_dir / 'hookline.db')}"
        if url.startswith(("postgres://", "postgresql://")):
            url = "postgresql+asyncpg://" + url.split("://", 1)[1]
        elif url.startswith("sqlite:///"):
            url = "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
        return url

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @cached_property
    def _persisted_secrets(self) -> dict[str, str]:
        return _load_or_create_secrets(self.data_dir)

    def jwt_key(self) -> str:
        if self.jwt_secret:
            return self.jwt_secret.get_secret_value()
        return self._persisted_secrets["jwt_secret"]

    def encryption_key_bytes(self) -> bytes:
        """32 bytes for AES-256-GCM, from a hex or urlsafe-base64 setting or the persisted file."""
        import base64

        raw = (
            self.encryption_key.get_secret_value()
            if self.encryption_key
            else self._persisted_secrets["encryption_key"]
        )
        try:
            key = bytes.fromhex(raw)
        except ValueError:
            key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        if len(key) != 32:
            raise ValueError("HOOKLINE_ENCRYPTION_KEY must encode exactly 32 bytes")
        return key


def _load_or_create_secrets(data_dir: Path) -> dict[str, str]:
    path = data_dir / "secrets.json"
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())  # written below, by this function
        return stored
    data_dir.mkdir(parents=True, exist_ok=True)
    values = {"jwt_secret": secrets.token_urlsafe(48), "encryption_key": secrets.token_hex(32)}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(values, handle)
    return values


def read_config_file(path: Path, known: set[str]) -> dict[str, Any]:
    """The TOML file's settings; :class:`ConfigError` when it is missing, not TOML, or has
    a key that is no setting."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"HOOKLINE_CONFIG names {path}, which does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise ConfigError(f"cannot read the config file {path}: {reason}") from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        where = re.search(r"\(at line (\d+), column (\d+)\)$", message)
        if where:
            message = message[: where.start()].strip()
            raise ConfigError(
                f"{path}, line {where[1]}, column {where[2]}: invalid TOML: {message}"
            ) from None
        raise ConfigError(f"{path}: invalid TOML: {message}") from None
    for key in values:
        if key not in known:
            raise ConfigError(f"{path}: unknown setting {key!r}{_did_you_mean(key, known)}")
    return values


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning per ``HOOKLINE_*`` variable that is neither a setting nor one of
    :data:`OTHER_VARIABLES`, with the likely intended name."""
    known = {PREFIX + name.upper() for name in Settings.model_fields}
    known |= {PREFIX + name for name in OTHER_VARIABLES}
    return [
        f"unknown variable {name}{_did_you_mean(name, known)}; it is ignored"
        for name in sorted(environ if environ is not None else os.environ)
        if name.startswith(PREFIX) and name not in known
    ]


def _did_you_mean(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
