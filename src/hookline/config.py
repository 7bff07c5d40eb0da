"""Settings, read once from ``HOOKLINE_*`` environment variables and an optional TOML file.

Secrets that are not given are generated on first start and persisted (mode 0600) in the
data directory, so a restart keeps tokens and encrypted webhook secrets valid. Several hosts
sharing one PostgreSQL database must all be given the same secrets through the environment.
"""

from __future__ import annotations

import json
import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, FilePath, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_RETRY_SCHEDULE = (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOOKLINE_", extra="ignore")

    data_dir: Path = Path(".hookline")
    database_url: str | None = None
    database_schema: str | None = None  # PostgreSQL schema to live in (default: search_path)
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None
    log_level: str = "info"
    # "text" (human-readable, the default) or "json" (one object per line, for log shippers).
    log_format: Literal["text", "json"] = "text"

    jwt_secret: SecretStr | None = None
    encryption_key: SecretStr | None = None
    token_ttl_seconds: int = 1800
    activation_ttl_seconds: int = 1800

    # Delivery engine.
    retry_schedule: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_RETRY_SCHEDULE)
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
    response_excerpt_bytes: int = 2048
    max_event_bytes: int = 256 * 1024
    workers: int = 1
    run_worker: bool = True
    # `hookline worker` serves /metrics, /healthz and /readyz here when a port is set.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int | None = None

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
        config_file = os.environ.get("HOOKLINE_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
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
        return json.loads(path.read_text())
    data_dir.mkdir(parents=True, exist_ok=True)
    values = {"jwt_secret": secrets.token_urlsafe(48), "encryption_key": secrets.token_hex(32)}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(values, handle)
    return values


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
