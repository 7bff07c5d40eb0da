"""The lean ``POST /events`` (a plain Starlette route ahead of the documented FastAPI route):
it is the one that serves requests, the OpenAPI description is the documented route's, and
every answer (errors included) is the one the documented route gives."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from hookline.api import deps
from hookline.api.errors import install_error_handlers
from hookline.api.routers import events as events_router
from hookline.runtime import Runtime
from tests.delivery_api.helpers import connection_event, create_webhook, runtime_of
from tests.support import ApiClient


def _documented_app(runtime: Runtime) -> FastAPI:
    """The app's error handlers and the events router's documented (FastAPI) routes only:
    POST /events reaches the FastAPI route."""
    app = FastAPI(title="documented")
    app.state.runtime = runtime
    install_error_handlers(app)
    documented = APIRouter(tags=["hookline"])
    documented.routes.extend(r for r in events_router.router.routes if isinstance(r, APIRoute))
    app.include_router(documented)
    return app


@pytest.fixture
async def documented(api: ApiClient) -> AsyncIterator[ApiClient]:
    app = _documented_app(runtime_of(api))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://hookline.test"
    ) as http:
        client = ApiClient(http, api.key)
        client.headers = dict(api.headers)  # the same token: the same JWT key
        yield client


async def test_the_lean_route_serves_post_events_and_only_that(
    api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lean route checks the bearer with ``bearer_account``, the FastAPI route with its
    ``current_account`` dependency: a recording stand-in tells which one served."""
    calls: list[str] = []
    real = deps.bearer_account

    def recording(runtime: Runtime, authorization: str | None) -> object:
        calls.append("lean")
        return real(runtime, authorization)

    monkeypatch.setattr(deps, "bearer_account", recording)
    assert (await api.post("/events", json=connection_event())).status_code == 202
    assert calls == ["lean"]
    batch = await api.post("/events/batch", json={"events": [connection_event()]})
    assert batch.status_code == 202 and calls == ["lean"]  # the batch is a FastAPI route
    first = events_router.router.routes[0]
    assert isinstance(first, Route) and not isinstance(first, APIRoute)
    assert first.path == "/events" and first.endpoint is events_router.lean_post_event


async def test_the_openapi_entry_is_the_documented_routes(api: ApiClient) -> None:
    served = (await api.get("/openapi.json")).json()
    expected = _documented_app(runtime_of(api)).openapi()
    assert served["paths"]["/events"]["post"] == expected["paths"]["/events"]["post"]
    operation = served["paths"]["/events"]["post"]
    assert operation["security"] == [{"HTTPBearer": []}]
    assert set(operation["responses"]) == {"202", "400", "409", "413"}
    schema_ref = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema_ref["title"] == "EventPostItem"
    for name in ("EventAccepted",):
        assert served["components"]["schemas"][name] == expected["components"]["schemas"][name]


def _answer(response: httpx.Response) -> tuple[int, object, dict[str, str]]:
    headers = {
        name: response.headers[name]
        for name in ("content-type", "www-authenticate", "allow", "x-idempotent-replayed")
        if name in response.headers
    }
    return response.status_code, response.json(), headers


async def test_every_answer_is_the_documented_routes(api: ApiClient, documented: ApiClient) -> None:
    runtime = runtime_of(api)
    await create_webhook(api)
    too_big = json.dumps({**connection_event(), "pad": "x" * runtime.settings.max_event_bytes})
    cases: list[tuple[str, dict]] = [
        ("POST", {"json": connection_event(), "headers": {"Authorization": ""}}),
        ("POST", {"json": connection_event(), "headers": {"Authorization": "Basic abc"}}),
        ("POST", {"json": connection_event(), "headers": {"Authorization": "Bearer nope"}}),
        ("POST", {"content": too_big, "headers": {"Content-Type": "application/json"}}),
        ("POST", {"content": b"{nope", "headers": {"Content-Type": "application/json"}}),
        ("POST", {"json": connection_event(status="sleeping")}),
        (
            "POST",
            {"json": {"event": "account.nope", "consumerid": connection_event()["consumerid"]}},
        ),
        ("POST", {"json": {**connection_event(), "integrationid": 424242}}),
        ("POST", {"json": connection_event(), "headers": {"x-chift-client-requestid": "k" * 201}}),
        ("DELETE", {}),  # 405: GET /events is the event list, POST the two routes above
    ]
    for method, kwargs in cases:
        lean = await api.request(method, "/events", **kwargs)
        reference = await documented.request(method, "/events", **kwargs)
        assert lean.status_code >= 400, lean.text
        assert _answer(lean) == _answer(reference), (method, kwargs)
    # Success: the replay through the documented route is the lean route's answer, byte for
    # byte, and a conflict answers the same on both.
    key = {"x-chift-client-requestid": "same"}
    first = await api.post("/events", json=connection_event(), headers=key)
    again = await documented.post("/events", json=connection_event(), headers=key)
    assert first.status_code == 202 and again.content == first.content
    assert again.headers["x-idempotent-replayed"] == "true"
    conflict = {"json": connection_event(status="inactive"), "headers": key}
    assert _answer(await api.post("/events", **conflict)) == _answer(
        await documented.post("/events", **conflict)
    )


async def test_the_app_takes_post_events_around_its_middleware_not_its_router(
    api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HooklineApp sends POST /events to ``serve_post_event`` inside FastAPI's middleware
    stack (the request guard still answers first), and every other request to the router."""
    served: list[str] = []
    real = events_router.serve_post_event

    async def recording(scope: Scope, receive: Receive, send: Send) -> None:
        served.append(scope["method"])
        await real(scope, receive, send)

    monkeypatch.setattr(events_router, "serve_post_event", recording)
    assert (await api.post("/events", json=connection_event())).status_code == 202
    refused = await api.post("/events", content=b"{}", headers={"Content-Type": "text/plain"})
    assert refused.status_code == 415 and refused.json()["error_code"]
    assert (await api.get("/events")).status_code == 200
    assert served == ["POST"]
