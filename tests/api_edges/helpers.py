"""Helpers for the edge tests: the contract (beside the checkout), error-shape checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

CONTRACT = Path(__file__).resolve().parents[3] / "shared" / "contract" / "platform-openapi.json"
needs_contract = pytest.mark.skipif(
    not CONTRACT.exists(), reason="shared/contract not beside this checkout"
)

BIG_INTS = (2**31, 2**63, 2**70)  # past PostgreSQL INTEGER, past 64 bits, far past


def contract() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(CONTRACT.read_text())
    return loaded


def chift_error(response: httpx.Response, status: int, error_code: str | None = None) -> dict:
    """The contract's ChiftError: ``detail`` a string (or null), never a list."""
    assert response.status_code == status, response.text
    body = response.json()
    assert {"message", "status", "detail", "error_code"} <= set(body), body
    assert body["status"] == "error"
    assert isinstance(body["message"], str) and body["message"]
    assert body["detail"] is None or isinstance(body["detail"], str), body
    if error_code is not None:
        assert body["error_code"] == error_code, body
    return body


def refused(response: httpx.Response) -> dict:
    """Any 4xx in an error shape of the contract: never a 5xx."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    body = response.json()
    assert body["status"] == "error" and isinstance(body["message"], str), body
    return body
