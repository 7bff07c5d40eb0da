"""OpenTelemetry tracing of an event's path; off unless an OTLP endpoint is configured.

One trace follows one event from the producer to the receiver:

- ``POST /events`` (or ``/events/batch``): a server span that continues the producer's
  ``traceparent`` header when it sends one;
- ``hookline.fanout`` inside it: the transaction that writes the event and its deliveries.
  Its context is stored with the event (``events.traceparent``), because the attempts happen
  later, in another task or process;
- ``hookline.attempt``: one client span per delivery attempt, a child of the fan-out span,
  and the webhook request carries its ``traceparent`` so the receiver can join the trace.

Tracing is on when ``HOOKLINE_OTEL_EXPORTER_OTLP_ENDPOINT`` or the standard
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set (OTLP over
HTTP, protobuf) and ``OTEL_SDK_DISABLED`` is not ``true``. Off, the runtime holds ``None`` and
the hot paths skip every call here: tracing costs nothing unless it is wanted.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from hookline import __version__
from hookline.config import Settings

_PROPAGATOR = TraceContextTextMapPropagator()
TRACEPARENT = "traceparent"
# Set while a fan-out span is open: the writes of events read it, wherever they are made,
# without a parameter threaded through every layer in between.
_WRITE_CONTEXT: ContextVar[str | None] = ContextVar("hookline_write_traceparent", default=None)


def write_traceparent() -> str | None:
    """The ``traceparent`` to store with an event written now (``None``: not traced)."""
    return _WRITE_CONTEXT.get()


def otlp_endpoint(settings: Settings) -> str | None:
    """Where spans go, or ``None`` when tracing is off."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if settings.otel_exporter_otlp_endpoint:
        return settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
    traces = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if traces:
        return traces
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return base.rstrip("/") + "/v1/traces" if base else None


class Tracing:
    """The process's tracer provider and the three kinds of span hookline makes."""

    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("hookline", __version__)

    @classmethod
    def from_settings(cls, settings: Settings) -> Tracing | None:
        endpoint = otlp_endpoint(settings)
        if endpoint is None:
            return None
        attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "hookline"}
        provider = TracerProvider(resource=Resource.create(attributes))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        return cls(provider)

    @contextmanager
    def ingest(self, name: str, headers: Mapping[str, str]) -> Iterator[Span]:
        """The server span of an ingest request, continuing the producer's trace if any."""
        parent = _PROPAGATOR.extract(headers)
        with self._tracer.start_as_current_span(name, context=parent, kind=SpanKind.SERVER) as span:
            yield span

    @contextmanager
    def fanout(self) -> Iterator[str]:
        """A span around the write of events and their deliveries; yields its
        ``traceparent``, which the events written inside it store."""
        with self._tracer.start_as_current_span("hookline.fanout") as span:
            value = traceparent_of(span)
            token = _WRITE_CONTEXT.set(value)
            try:
                yield value
            finally:
                _WRITE_CONTEXT.reset(token)

    def attempt(
        self,
        parent: str | None,
        *,
        delivery_id: uuid.UUID,
        event_id: uuid.UUID,
        webhook_id: uuid.UUID,
        attempt: int,
    ) -> Span:
        """A started client span for one attempt, a child of the event's stored context; the
        caller ends it once the outcome is known (see :func:`end_attempt`)."""
        context = _PROPAGATOR.extract({TRACEPARENT: parent}) if parent else None
        return self._tracer.start_span(
            "hookline.attempt",
            context=context,
            kind=SpanKind.CLIENT,
            attributes={
                "hookline.delivery_id": str(delivery_id),
                "hookline.event_id": str(event_id),
                "hookline.webhook_id": str(webhook_id),
                "hookline.attempt": attempt,
            },
        )

    def shutdown(self) -> None:
        """Export what is buffered, then stop (at process shutdown)."""
        self._provider.shutdown()


def traceparent_of(span: Span) -> str:
    """The W3C ``traceparent`` header value that makes a child of ``span``."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier[TRACEPARENT]


def end_attempt(
    span: Span, *, outcome: str, http_status: int | None, error_class: str | None
) -> None:
    span.set_attribute("hookline.outcome", outcome)
    if http_status is not None:
        span.set_attribute("http.response.status_code", http_status)
    if error_class is not None:
        span.set_attribute("error.type", error_class)
    if outcome != "delivered":
        span.set_status(Status(StatusCode.ERROR, error_class or outcome))
    span.end()
