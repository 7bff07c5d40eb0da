"""Shared fixtures: real SQLite files, a real PostgreSQL schema per test, live servers."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from hookline.api.app import create_app
from hookline.bootstrap import prepare_database
from hookline.clock import FrozenClock
from hookline.config import Settings
from hookline.platform.accounts import create_account
from hookline.runtime import Runtime
from tests.support import ApiClient

POSTGRES_URL = os.environ.get(
    "HOOKLINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("HOOKLINE_REQUIRE_POSTGRES") == "1"
TEST_ENCRYPTION_KEY = "11" * 32

_postgres_state: dict[str, Any] = {}


def postgres_available() -> tuple[bool, str]:
    """Checked once per run; the reason is shown in every skip and in the summary."""
    if "ok" not in _postgres_state:

        async def probe() -> None:
            conn = await asyncpg.connect(POSTGRES_URL, timeout=3)
            await conn.close()

        try:
            asyncio.run(probe())
            _postgres_state.update(ok=True, reason="")
        except Exception as error:
            _postgres_state.update(
                ok=False,
                reason=f"PostgreSQL unreachable at {POSTGRES_URL}: {type(error).__name__}: {error}",
            )
    return _postgres_state["ok"], _postgres_state["reason"]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _postgres_state.get("ok") is False:
        terminalreporter.write_sep(
            "!", "POSTGRESQL TESTS WERE SKIPPED: " + _postgres_state["reason"], red=True
        )


def require_postgres() -> None:
    ok, reason = postgres_available()
    if not ok:
        if REQUIRE_POSTGRES:
            pytest.fail(f"HOOKLINE_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(f"SKIPPING POSTGRESQL TEST — {reason}")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        require_postgres()
    return request.param


@pytest.fixture
def postgres_backend() -> str:
    require_postgres()
    return "postgresql"


def make_settings(tmp_path: Path, backend: str, schema: str | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "jwt_secret": "test-jwt-secret-0123456789abcdef0123456789",
        "encryption_key": TEST_ENCRYPTION_KEY,
        "outbound_allowlist": ["127.0.0.0/8", "::1"],
        "retry_schedule": [0, 0.2, 0.4],
        "retry_jitter": 0.0,
        "delivery_poll_seconds": 0.5,
    }
    if backend == "postgresql":
        values["database_url"] = POSTGRES_URL
        values["database_schema"] = schema
    values.update(overrides)
    return Settings(**values)


class Backend:
    """A fresh database (SQLite file or PostgreSQL schema) and the settings pointing at it."""

    def __init__(self, tmp_path: Path, kind: str) -> None:
        self.tmp_path = tmp_path
        self.kind = kind
        self.schema = f"hl_{uuid.uuid4().hex[:12]}" if kind == "postgresql" else None

    def settings(self, **overrides: Any) -> Settings:
        return make_settings(self.tmp_path, self.kind, self.schema, **overrides)

    def env(self, **overrides: str) -> dict[str, str]:
        """Environment for a subprocess (server or worker) on the same database."""
        settings = self.settings()
        env = {
            **os.environ,
            "HOOKLINE_DATA_DIR": str(settings.data_dir),
            "HOOKLINE_JWT_SECRET": settings.jwt_key(),
            "HOOKLINE_ENCRYPTION_KEY": TEST_ENCRYPTION_KEY,
            "HOOKLINE_OUTBOUND_ALLOWLIST": "127.0.0.0/8,::1",
            "HOOKLINE_RETRY_SCHEDULE": "0,0.2,0.4",
            "HOOKLINE_RETRY_JITTER": "0",
            "HOOKLINE_DELIVERY_POLL_SECONDS": "0.5",
            "HOOKLINE_LOG_LEVEL": "warning",
        }
        if self.kind == "postgresql":
            env["HOOKLINE_DATABASE_URL"] = POSTGRES_URL
            env["HOOKLINE_DATABASE_SCHEMA"] = self.schema or ""
        else:
            env.pop("HOOKLINE_DATABASE_URL", None)
            env.pop("HOOKLINE_DATABASE_SCHEMA", None)
        env.update(overrides)
        return env

    async def drop(self) -> None:
        if self.schema:
            conn = await asyncpg.connect(POSTGRES_URL)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            finally:
                await conn.close()


@pytest.fixture
async def database(tmp_path: Path, backend: str) -> AsyncIterator[Backend]:
    db = Backend(tmp_path, backend)
    try:
        yield db
    finally:
        await db.drop()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def runtime(database: Backend) -> AsyncIterator[Runtime]:
    """A migrated runtime on the wall clock (tests that move time build their own)."""
    rt = Runtime.create(database.settings())
    await prepare_database(rt)
    try:
        yield rt
    finally:
        await rt.db.dispose()


@pytest.fixture
async def api(runtime: Runtime) -> AsyncIterator[ApiClient]:
    """An authenticated client for a fresh account, talking to the app in-process."""
    app = create_app(runtime, run_background=False)
    async with runtime.db.transaction() as conn:
        key = await create_account(conn, "test account", now=runtime.clock.now())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hookline.test") as http:
        client = ApiClient(http, key)
        await client.login()
        yield client


@pytest.fixture
async def receiver() -> AsyncIterator[Any]:
    from tests.receiver import Receiver

    rec = await Receiver().start()
    try:
        yield rec
    finally:
        await rec.stop()


@pytest.fixture
def live_server(database: Backend) -> Any:
    """Start ``hookline serve`` as a subprocess on the test's database; stopped after."""
    from tests.support import LiveServer

    servers: list[LiveServer] = []

    def start(**env: str) -> LiveServer:
        server = LiveServer(database.env(**env)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
