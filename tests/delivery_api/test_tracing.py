"""OpenTelemetry: a producer's trace runs through POST /events, the fan-out and the delivery
attempt to the receiver, exported over real OTLP/HTTP to a collector stand-in on loopback."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from hookline.delivery.worker import DeliveryWorker
from hookline.runtime import Runtime
from hookline.tracing import Tracing
from tests.delivery_api.helpers import connection_event, create_webhook, runtime_of
from tests.support import ApiClient

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PRODUCER_SPAN = "00f067aa0ba902b7"


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]


class Collector:
    """Decodes OTLP/HTTP protobuf exports, as a real collector would receive them."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.content_types: set[str] = set()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> Collector:
        app = web.Application()
        app.router.add_post("/v1/traces", self._export)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _export(self, request: web.Request) -> web.Response:
        self.content_types.add(request.content_type)
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        for resource_spans in message.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        return web.Response(status=200, content_type="application/x-protobuf")

    def named(self, name: str) -> list[ReceivedSpan]:
        return [span for span in self.spans if span.name == name]


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def traced(runtime: Runtime, collector: Collector) -> Tracing:
    settings = runtime.settings.model_copy(update={"otel_exporter_otlp_endpoint": collector.url})
    tracing = Tracing.from_settings(settings)
    assert tracing is not None
    return tracing


async def test_tracing_is_off_without_an_endpoint(api: ApiClient) -> None:
    assert runtime_of(api).tracing is None


async def test_a_producer_trace_continues_into_the_delivery_attempt(
    api: ApiClient, receiver: Any
) -> None:
    runtime = runtime_of(api)
    collector = await Collector().start()
    runtime.tracing = tracing = traced(runtime, collector)
    worker = DeliveryWorker(runtime)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await create_webhook(api, url=f"{receiver.url}/hook", signingsecret="trace-secret")
        sent = await api.post(
            "/events",
            json=connection_event(),
            headers={"traceparent": f"00-{TRACE_ID}-{PRODUCER_SPAN}-01"},
        )
        assert sent.status_code == 202
        [request] = await receiver.wait_for(1)
        await worker.wait_recorded(1)
    finally:
        stop.set()
        await task
        # Flushes the batch processor: the exporter blocks, and the collector shares the loop.
        await asyncio.to_thread(tracing.shutdown)
        await collector.stop()

    assert collector.content_types == {"application/x-protobuf"}
    [ingest] = collector.named("POST /events")
    [fanout] = collector.named("hookline.fanout")
    [attempt] = collector.named("hookline.attempt")
    assert {ingest.trace_id, fanout.trace_id, attempt.trace_id} == {TRACE_ID}
    assert ingest.parent_span_id == PRODUCER_SPAN
    assert fanout.parent_span_id == ingest.span_id
    assert attempt.parent_span_id == fanout.span_id
    event_id = sent.json()["eventid"]
    assert attempt.attributes["hookline.event_id"] == event_id
    assert attempt.attributes["hookline.delivery_id"] == request.headers["webhook-id"]
    assert attempt.attributes["hookline.outcome"] == "delivered"
    assert attempt.attributes["http.response.status_code"] == 200
    # The receiver can join the trace: its request's parent is the attempt span.
    assert request.headers["traceparent"] == f"00-{TRACE_ID}-{attempt.span_id}-01"
    uuid.UUID(event_id)


async def test_an_untraced_producer_gets_a_new_trace_per_event(
    api: ApiClient, receiver: Any
) -> None:
    runtime = runtime_of(api)
    collector = await Collector().start()
    runtime.tracing = tracing = traced(runtime, collector)
    worker = DeliveryWorker(runtime)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await create_webhook(api, url=f"{receiver.url}/hook")
        for _ in range(2):
            assert (await api.post("/events", json=connection_event())).status_code == 202
        requests = await receiver.wait_for(2)
        await worker.wait_recorded(2)
    finally:
        stop.set()
        await task
        await asyncio.to_thread(tracing.shutdown)
        await collector.stop()

    ingests = collector.named("POST /events")
    attempts = collector.named("hookline.attempt")
    assert len(ingests) == len(attempts) == 2
    assert all(span.parent_span_id == "" for span in ingests)  # roots: no producer context
    assert {span.trace_id for span in attempts} == {span.trace_id for span in ingests}
    assert len({span.trace_id for span in ingests}) == 2
    sent_traces = {r.headers["traceparent"].split("-")[1] for r in requests}
    assert sent_traces == {span.trace_id for span in ingests}
