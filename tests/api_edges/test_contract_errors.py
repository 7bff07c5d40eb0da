"""Issue 18, "Why" 3: errors exactly as the contract documents them, and sync/flow bodies
held to the contract's schemas (what they reject is refused, what they take is stored and
read back in the contract's response shape)."""

from __future__ import annotations

import uuid
from typing import Any

import jsonschema
import pytest

from hookline.api.errors import VALIDATION_LIST_OPERATIONS
from tests.api_edges.helpers import chift_error, contract, needs_contract
from tests.support import ApiClient

pytestmark = needs_contract


def contract_schema(name: str) -> dict[str, Any]:
    """One component schema of the contract, resolvable on its own."""
    document = contract()
    return {**document["components"]["schemas"][name], "components": document["components"]}


def conforms(instance: Any, name: str) -> None:
    jsonschema.validate(instance, contract_schema(name))


def test_list_shaped_422s_are_exactly_the_contracts() -> None:
    documented = {
        (method.upper(), path)
        for path, operations in contract()["paths"].items()
        for method, operation in operations.items()
        if "HTTPValidationError" in str(operation.get("responses", {}).get("422"))
    }
    assert documented == VALIDATION_LIST_OPERATIONS


async def _ids(api: ApiClient) -> dict[str, str]:
    consumer = (await api.post("/consumers", json={"name": "c"})).json()["consumerid"]
    return {"consumer": consumer, "sync": str(uuid.uuid4()), "flow": str(uuid.uuid4())}


async def test_the_eight_chifterror_422s_have_a_string_detail(api: ApiClient) -> None:
    ids = await _ids(api)
    c, s, f = ids["consumer"], ids["sync"], ids["flow"]
    calls = [
        ("POST", "/consumers", {"name": ["x"]}),
        ("PATCH", f"/consumers/{c}", {"name": ["x"]}),
        ("POST", f"/consumers/{c}/connections", {"integrationid": "x"}),
        ("PATCH", f"/consumers/{c}/connections/{uuid.uuid4()}", {"name": ["x"]}),
        ("PATCH", f"/consumers/{c}/syncs/{s}", [{"name": "m"}]),
        ("PATCH", f"/consumers/{c}/syncs/{s}/flows/{f}", {"data": "x"}),
        ("POST", f"/consumers/{c}/syncs/{s}/flows/{f}/enable", {"integrationids": "x"}),
        ("POST", f"/syncs/{s}/flows/{f}/event", {"consumers": "x"}),
    ]
    for method, path, body in calls:
        response = await api.request(method, path, json=body)
        error = chift_error(response, 422, "ERROR_VALIDATION")
        conforms(error, "ChiftError")
        assert error["detail"].startswith("body"), error
        assert error["errors"] and all({"loc", "msg", "type"} <= set(e) for e in error["errors"])


async def test_httpvalidationerror_operations_keep_the_list(api: ApiClient) -> None:
    for response in (
        await api.get("/webhooks", params={"status": "paused"}),
        await api.post("/syncs", json={"name": "s"}),
        await api.http.post("/token", json={"clientId": "x"}),
    ):
        assert response.status_code == 422
        conforms(response.json(), "HTTPValidationError")
        assert isinstance(response.json()["detail"], list)


def _field(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "fixed", **extra}


VALID_SYNC: dict[str, Any] = {
    "name": "Sales to accounting",
    "config": {"datalayer": True},
    "connections": [{"one_api": 3, "connection_type": 2}],
    "mappings": [
        {
            "name": "vat",
            "conditions": {"hideIf": {"field": "x"}},
            "sub_mappings": [
                {
                    "name": "rates",
                    "source_field": _field("source", values=[{"id": "21", "label": "21%"}]),
                    "target_field": {"name": "target", "type": "api", "api_route": "/taxes"},
                }
            ],
        }
    ],
    "flows": [
        {
            "name": "invoices",
            "execution": {"type": "code", "data": {"code": "print(1)"}},
            "config": {
                "datastores": [
                    {
                        "name": "seen",
                        "definition": {"columns": [{"name": "id", "title": "Id", "type": "text"}]},
                    }
                ]
            },
            "triggers": [{"id": "t", "type": "timer", "cronschedules": ["0 * * * *"]}],
        }
    ],
}


async def test_a_contract_valid_sync_is_stored_and_read_back_in_the_contracts_shape(
    api: ApiClient,
) -> None:
    conforms(VALID_SYNC, "CreateSyncItem")
    created = await api.post("/syncs", json=VALID_SYNC)
    assert created.status_code == 200, created.text
    conforms(created.json(), "ReadSyncItem")
    read = await api.get(f"/syncs/{created.json()['syncid']}")
    conforms(read.json(), "ReadSyncItem")
    sub = read.json()["mappings"][0]["sub_mappings"][0]
    assert sub["source_field"]["values"] == [{"id": "21", "label": "21%"}]
    assert read.json()["flows"][0]["config"]["datastores"][0]["name"] == "seen"


def _with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    import copy

    body = copy.deepcopy(VALID_SYNC)
    target: Any = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


SUB = ("mappings", 0, "sub_mappings", 0)


@pytest.mark.parametrize(
    "body",
    [
        _with((*SUB, "source_field", "type"), "AAA"),
        _with((*SUB, "source_field", "values"), [None]),
        _with((*SUB, "target_field"), {"name": "t"}),
        _with(("mappings", 0, "conditions"), {"showIf": {}}),
        _with(("config",), {"other": 1}),
        _with(("flows", 0, "execution", "data"), {"script": "x"}),
        _with(("flows", 0, "config", "datastores"), [{"name": "no definition"}]),
    ],
)
async def test_sync_bodies_the_contract_rejects_are_refused(
    api: ApiClient, body: dict[str, Any]
) -> None:
    with pytest.raises(jsonschema.ValidationError):
        conforms(body, "CreateSyncItem")
    response = await api.post("/syncs", json=body)
    assert response.status_code == 422, response.text
    assert (await api.get("/syncs")).json() == []
