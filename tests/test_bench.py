"""The benchmark still runs end to end (small sizes; its numbers live in the README, not here):
every queued delivery reaches the receiver and is counted, on both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from bench.backlog import TimedLink, timed_links
from bench.delivery import ReceiverProcess, drain, latency_inprocess

from hookline.runtime import Runtime
from hookline.store.delivery_queue import open_delivery_queue
from tests.conftest import Backend


@pytest.fixture
async def bench_receiver() -> AsyncIterator[ReceiverProcess]:
    receiver = await ReceiverProcess().ready()
    try:
        yield receiver
    finally:
        receiver.stop()


async def test_the_drain_benchmark_delivers_and_counts_everything(
    bench_receiver: ReceiverProcess,
) -> None:
    await _drain_and_check("sqlite", bench_receiver)


async def test_the_drain_benchmark_on_postgres(
    postgres_backend: str, bench_receiver: ReceiverProcess
) -> None:
    await _drain_and_check(postgres_backend, bench_receiver)


async def _drain_and_check(backend: str, bench_receiver: ReceiverProcess) -> None:
    result = await drain(backend, bench_receiver, 300, pin=False)
    assert result["received"] == result["n"] == 300
    assert result["hookline"] > 0 and result["bare"] > 0


async def test_the_in_process_latency_benchmark_receives_every_event(
    bench_receiver: ReceiverProcess,
) -> None:
    result = await latency_inprocess("sqlite", bench_receiver, rate=100, seconds=0.5)
    assert result["received"] == result["sent"] == 50
    assert 0 < result["p50"] <= result["p99"] <= result["max"]


async def test_the_ingest_benchmark_accepts_and_delivers_everything(
    bench_receiver: ReceiverProcess,
) -> None:
    from bench.ingest import accept_rates, end_to_end

    rates = await accept_rates("sqlite", bench_receiver, 1, seconds=0.3, concurrency=4)
    assert rates["errors"] == 0  # every request of every route answered 202
    assert min(rates["noop"], rates["single"], rates["batch100"], rates["batch1000"]) > 0
    e2e = await end_to_end("sqlite", bench_receiver, 1, 2000)
    assert (e2e["n"], e2e["received"], e2e["errors"]) == (2000, 2000, 0)


def test_the_backlog_benchmark_times_the_links_the_worker_claims_through(tmp_path: Path) -> None:
    """bench.backlog's claim and record timings come from wrapping the queue's links: the
    wrapper must sit where the delivery queue opens them (it once patched a name the worker
    no longer used, and timed nothing)."""
    rt = Runtime.create(Backend(tmp_path, "sqlite").settings())
    with timed_links({"claim": [], "record": []}):
        queue = open_delivery_queue(rt.db)
    assert isinstance(queue.claim.__self__, TimedLink)  # type: ignore[attr-defined]
    after = open_delivery_queue(rt.db)  # the original is back once the block ends
    assert not isinstance(after.claim.__self__, TimedLink)  # type: ignore[attr-defined]
