"""The FastAPI application, with the background services of this process in its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

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

    app = FastAPI(
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
