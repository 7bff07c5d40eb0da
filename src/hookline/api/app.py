"""The FastAPI application, with the background services of this process in its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from hookline import __version__
from hookline.api.errors import install_error_handlers
from hookline.api.routers import catalog, health, token
from hookline.background import BackgroundServices
from hookline.runtime import Runtime


def create_app(runtime: Runtime, *, run_background: bool = True) -> FastAPI:
    """Build the app. ``run_background`` starts workers and schedulers with the server."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = BackgroundServices(runtime)
        if run_background:
            await services.start()
        try:
            yield
        finally:
            await services.stop()
            await runtime.db.dispose()

    app = FastAPI(
        title="hookline",
        version=__version__,
        description="Events and webhooks for integration hubs, wire-compatible with the Chift "
        "public API.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    for router in (health.router, token.router, catalog.router):
        app.include_router(router)
    return app
