"""Delivery test helpers: an in-process worker that tests can await."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hookline.bootstrap import prepare_database
from hookline.clock import Clock, FrozenClock
from hookline.delivery.worker import DeliveryWorker
from hookline.runtime import Runtime
from tests.conftest import Backend


@contextlib.asynccontextmanager
async def running_worker(rt: Runtime) -> AsyncIterator[DeliveryWorker]:
    """``DeliveryWorker.run`` as a task (what ``run_delivery_worker`` does), stopped after."""
    worker = DeliveryWorker(rt)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=20)


@pytest.fixture
async def make_runtime(database: Backend) -> AsyncIterator[Any]:
    """Build migrated runtimes with extra settings (and a clock); disposed after the test."""
    made: list[Runtime] = []

    async def make(clock: Clock | None = None, **settings: Any) -> Runtime:
        rt = Runtime.create(database.settings(**settings), clock=clock or FrozenClock())
        if clock is None:
            from hookline.clock import SYSTEM_CLOCK

            rt.clock = SYSTEM_CLOCK
        await prepare_database(rt)
        made.append(rt)
        return rt

    yield make
    for rt in made:
        await rt.db.dispose()


@pytest.fixture
async def pg_runtime(postgres_backend: str, tmp_path: Path) -> AsyncIterator[Runtime]:
    """A migrated runtime on a schema of its own in PostgreSQL, whatever the test's backend."""
    backend = Backend(tmp_path, "postgresql")
    rt = Runtime.create(backend.settings())
    await prepare_database(rt)
    try:
        yield rt
    finally:
        await rt.db.dispose()
        await backend.drop()
