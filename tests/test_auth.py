"""POST /token and bearer auth, with the contract's error shapes."""

from __future__ import annotations

import uuid

import httpx

from hookline.api.app import create_app
from hookline.api.tokens import issue_token
from tests.support import ApiClient


def assert_error_shape(body: dict, status: str = "error") -> None:
    assert set(body) == {"message", "status", "detail", "error_code"}
    assert body["status"] == status
    assert isinstance(body["message"], str) and body["message"]


async def test_token_has_the_contract_shape_and_30_minute_life(api: ApiClient) -> None:
    response = await api.http.post("/token", json=api.credentials)
    assert response.status_code == 200
    token = response.json()
    assert set(token) == {"access_token", "token_type", "expires_in", "expires_on"}
    assert token["token_type"] == "bearer"
    assert token["expires_in"] == 1800
    assert token["expires_on"] > 0


async def test_extra_fields_sent_by_the_sdk_are_ignored(api: ApiClient) -> None:
    response = await api.http.post("/token", json={**api.credentials, "envId": "x"})
    assert response.status_code == 200


async def test_wrong_secret_wrong_account_unknown_client_answer_401(api: ApiClient) -> None:
    for change in (
        {"clientSecret": "wrong"},
        {"accountId": str(uuid.uuid4())},
        {"clientId": "nobody"},
    ):
        response = await api.http.post("/token", json={**api.credentials, **change})
        assert response.status_code == 401, change
        assert_error_shape(response.json())


async def test_missing_or_bad_bearer_answers_401(api: ApiClient) -> None:
    response = await api.http.get("/webhooks/list")
    assert response.status_code == 401
    assert_error_shape(response.json())
    response = await api.http.get("/webhooks/list", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert_error_shape(response.json())


async def test_expired_token_answers_401(api: ApiClient) -> None:
    runtime = api.http._transport.app.state.runtime  # type: ignore[attr-defined]
    past = runtime.clock.now().replace(year=2020)
    stale = issue_token(
        runtime.settings.jwt_key(),
        account_id=api.key.account_id,
        client_id=api.key.client_id,
        now=past,
        ttl_seconds=1800,
    )
    response = await api.http.get(
        "/webhooks/list", headers={"Authorization": f"Bearer {stale.access_token}"}
    )
    assert response.status_code == 401
    assert response.json()["error_code"] == "ERROR_TOKEN_EXPIRED"


async def test_token_signed_with_another_key_is_refused(api: ApiClient) -> None:
    runtime = api.http._transport.app.state.runtime  # type: ignore[attr-defined]
    forged = issue_token(
        "another-key-0123456789-0123456789-0123",
        account_id=api.key.account_id,
        client_id="x",
        now=runtime.clock.now(),
        ttl_seconds=1800,
    )
    response = await api.http.get(
        "/webhooks/list", headers={"Authorization": f"Bearer {forged.access_token}"}
    )
    assert response.status_code == 401


async def test_validation_errors_use_the_contract_422_shape(api: ApiClient) -> None:
    response = await api.http.post("/token", json={"clientId": "x"})
    assert response.status_code == 422
    body = response.json()
    assert body["message"] == "Validation error"
    assert body["status"] == "error"
    locations = [item["loc"] for item in body["detail"]]
    assert ["body", "clientSecret"] in locations and ["body", "accountId"] in locations
    assert all("input" not in item for item in body["detail"])  # no echo of secrets


async def test_webhook_types_list_matches_contract(api: ApiClient) -> None:
    response = await api.get("/webhooks/list")
    assert response.status_code == 200
    items = response.json()
    assert len(items) == 13
    assert {"event": "pos.order.completed", "api": "POS"} in items
    assert {"event": "account.flow.executed", "api": None} in items


async def test_event_types_serve_schemas_and_examples(api: ApiClient) -> None:
    from hookline.catalog import validate_body

    response = await api.get("/event-types")
    assert response.status_code == 200
    items = response.json()
    assert len(items) == 13
    for item in items:
        assert item["schema"]["title"] == item["event"]
        validate_body(item["example"])


async def test_health_and_readiness(runtime) -> None:
    app = create_app(runtime, run_background=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["database"] == runtime.db.dialect
        assert (await http.get("/openapi.json")).status_code == 200
        assert (await http.get("/docs")).status_code == 200
