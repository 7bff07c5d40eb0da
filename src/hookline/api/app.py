"""The FastAPI application, with the background services of this process in its lifespan."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from hookline import __version__
from hookline.api.errors import document_validation_errors, install_error_handlers
from hookline.api.guard import RequestGuard
from hookline.api.routers import (
    activation,
    agents,
    catalog,
    connections,
    consumers,
    events,
    events_read,
    executions,
    health,
    integrations,
    issues,
    metrics,
    orders,
    stream,
    syncs,
    token,
    webhooks,
)
from hookline.background import BackgroundServices
from hookline.delivery.emit import rehearse_emit
from hookline.runtime import Runtime, freeze_startup_objects
from hookline.ui import explorer as dashboard_explorer
from hookline.ui import routes as dashboard


class HooklineApp(FastAPI):
    """FastAPI, with ``POST /events`` (the hot path) taken straight to its lean handler.

    Every other request walks FastAPI's middleware stack and router as usual. ``POST
    /events`` goes through the SAME middleware (the stack FastAPI builds, error handlers and
    :class:`RequestGuard` included) around :func:`events.serve_post_event` instead of the
    router: the router would find the lean route first anyway (``events`` is the first
    router), but matching it and FastAPI's wrappers cost about a fifth of the request's
    CPU. Not taken (the request goes the usual way, to the same lean route) when the app
    has a ``root_path`` or FastAPI's native OpenTelemetry is on: it reads global providers,
    so whether it is on is checked again at most once a second while it is off (a global
    provider can be set only once, and then it stays on).
    """

    _lean_stack: ASGIApp | None = None
    _telemetry_off_until = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == "/events"
            and scope["method"] == "POST"
            and not scope.get("root_path")
            and not self.root_path
            and self._telemetry_off()
        ):
            scope["app"] = self
            scope["router"] = self.router
            scope["endpoint"] = events.lean_post_event
            await (self._lean_stack or self._build_lean_stack())(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def _telemetry_off(self) -> bool:
        now = time.monotonic()
        if now < self._telemetry_off_until:
            return True
        if self._native_telemetry.enabled():
            return False
        self._telemetry_off_until = now + 1.0
        return True

    def _build_lean_stack(self) -> ASGIApp:
        """FastAPI's own middleware stack, with the lean handler where the router sits."""
        router = self.router
        self.router = events.serve_post_event  # type: ignore[assignment]
        try:
            stack = self.build_middleware_stack()
        finally:
            self.router = router
        self._lean_stack = stack
        return stack


def create_app(runtime: Runtime, *, run_background: bool = True) -> FastAPI:
    """Build the app. ``run_background`` starts workers and schedulers with the server."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = BackgroundServices(runtime)
        await runtime.db.connect_ahead(events=True, warm=rehearse_emit)
        if run_background:
            await services.start()
        freeze_startup_objects()
        try:
            yield
        finally:
            await services.stop()
            await runtime.db.dispose()
            if runtime.tracing is not None:
                runtime.tracing.shutdown()

    app = HooklineApp(
        title="hookline",
        version=__version__,
        description="Events and webhooks for integration hubs, wire-compatible with the Chift "
        "public API.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    app.add_middleware(RequestGuard)
    _document_errors(app)
    # events first: every request walks the routers in this order until one matches, and
    # POST /events is the hot path (no other path starts with /events). catalog before
    # webhooks: /webhooks/list must win over /webhooks/{webhookid}.
    for module in (
        events,
        health,
        metrics,
        token,
        catalog,
        webhooks,
        integrations,
        consumers,
        connections,
        activation,
        agents,
        syncs,
        executions,
        issues,
        orders,
        stream,
    ):
        app.include_router(module.router)
    app.include_router(events_read.router)
    app.include_router(dashboard.router)
    app.include_router(dashboard_explorer.router)  # last: its catch-all answers the 404 page
    return app


def _document_errors(app: FastAPI) -> None:
    """The generated OpenAPI document, with each operation's 422 shape (see api.errors)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_validation_errors(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
