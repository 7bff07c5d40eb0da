"""Issue 18: ``/metrics`` and ``/readyz`` answer 503 while the database is away (PostgreSQL
stopped under a running app), API calls a 503 in the contract's shape, and all of them
recover once it is back. The cluster is the test's own, never the shared server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from hookline.api.app import create_app
from hookline.bootstrap import prepare_database
from hookline.platform.accounts import create_account
from hookline.runtime import Runtime
from tests.api_edges.helpers import chift_error
from tests.api_edges.own_postgres import OwnPostgres
from tests.conftest import make_settings, require_postgres
from tests.support import ApiClient


@pytest.fixture
def own_postgres() -> AsyncIterator[OwnPostgres]:
    require_postgres()  # the same binaries; skipped (or failed) like the other PG tests
    cluster = OwnPostgres().init()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.mark.timeout(180)
async def test_metrics_readyz_and_api_answer_503_while_postgres_is_down(
    own_postgres: OwnPostgres, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, "postgresql", None, database_url=own_postgres.url)
    rt = Runtime.create(settings)
    await prepare_database(rt)
    try:
        async with rt.db.transaction() as conn:
            key = await create_account(conn, "away", now=rt.clock.now())
        app = create_app(rt, run_background=False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hookline.test") as http:
            api = ApiClient(http, key)
            await api.login()
            assert (await http.get("/metrics")).status_code == 200
            assert (await http.get("/readyz")).status_code == 200

            own_postgres.stop()
            metrics = await http.get("/metrics")
            assert metrics.status_code == 503, metrics.text
            assert metrics.text.startswith("# database unavailable")
            ready = await http.get("/readyz")
            assert (ready.status_code, ready.json()["status"]) == (503, "unavailable")
            chift_error(await api.get("/webhooks"), 503, "ERROR_DATABASE_UNAVAILABLE")
            assert (await http.get("/healthz")).status_code == 200  # the process is alive

            own_postgres.start()
            deadline = time.monotonic() + 30
            while (await http.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, "no recovery within 30 s"
            assert (await http.get("/metrics")).status_code == 200
            assert (await api.get("/webhooks")).status_code == 200
    finally:
        await rt.db.dispose()
