"""Property-based fuzzing of an in-process app with schemathesis (shared by the fuzz tests).

Hypothesis runs synchronously in a worker thread; each generated request is sent with the
test's own httpx client on the test's event loop (where the runtime's database pools live),
and its response is checked there by schemathesis: no server error, and the body conforms to
the response schema of its status code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import negative_data_rejection, response_schema_conformance

BASE_URL = "http://hookline.test"


@dataclass
class FuzzReport:
    requests: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timings: list[tuple[str, int, float]] = field(default_factory=list)


def _transport_kwargs(case: Any, headers: dict[str, str]) -> dict[str, Any]:
    """schemathesis' requests-style arguments, as httpx takes them."""
    kwargs: dict[str, Any] = case.as_transport_kwargs(base_url=BASE_URL, headers=headers)
    sent: dict[str, Any] = {
        "method": kwargs["method"],
        "url": kwargs["url"],
        "headers": kwargs.get("headers"),
        "params": kwargs.get("params"),
    }
    if kwargs.get("cookies"):
        sent["headers"] = {
            **(sent["headers"] or {}),
            "cookie": "; ".join(f"{k}={v}" for k, v in kwargs["cookies"].items()),
        }
    if "json" in kwargs:
        sent["json"] = kwargs["json"]
    data = kwargs.get("data")
    if isinstance(data, (bytes, str)):
        sent["content"] = data
    elif data is not None:
        sent["data"] = data
    return sent


def fuzz(
    openapi: dict[str, Any],
    http: httpx.AsyncClient,
    headers: dict[str, str],
    loop: asyncio.AbstractEventLoop,
    *,
    examples: int,
    modes: tuple[GenerationMode, ...] = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE),
    include: Callable[[str, str], bool] = lambda method, path: True,
    negative_rejection: Callable[[str, str], bool] = lambda method, path: False,
) -> FuzzReport:
    """Run in a worker thread: ``examples`` cases per operation and mode."""
    schema = schemathesis.openapi.from_dict(openapi)
    report = FuzzReport()
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        method, path = operation.method.upper(), operation.path
        if not include(method, path):
            continue
        for mode in modes:
            checks: list[Any] = [not_a_server_error, response_schema_conformance]
            if mode is GenerationMode.NEGATIVE and negative_rejection(method, path):
                checks.append(negative_data_rejection)
            label = f"{method} {path} [{mode.value}]"
            run = _runner(operation, mode, checks, label, http, headers, loop, report, examples)
            failed = len(report.failures)
            began, count = time.monotonic(), report.requests
            try:
                run()
            except Unsatisfiable:
                pass  # nothing to generate in this mode (no parameters to break, say)
            except Exception as error:  # go on with the other operations, assert at the end
                if len(report.failures) == failed:  # not a check: the run itself broke
                    report.failures.append(f"{label}: {type(error).__name__}: {error}"[:900])
            report.timings.append((label, report.requests - count, time.monotonic() - began))
    report.seconds = time.monotonic() - started
    return report


def _runner(
    operation: Any,
    mode: GenerationMode,
    checks: list[Any],
    label: str,
    http: httpx.AsyncClient,
    headers: dict[str, str],
    loop: asyncio.AbstractEventLoop,
    report: FuzzReport,
    examples: int,
) -> Callable[[], None]:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def one(case: Any) -> None:
        sent = _transport_kwargs(case, headers)
        future = asyncio.run_coroutine_threadsafe(http.request(**sent), loop)
        response = future.result(timeout=60)
        report.requests += 1
        report.by_status[response.status_code] = report.by_status.get(response.status_code, 0) + 1
        try:
            case.validate_response(response, checks=checks)
        except Exception as error:  # recorded with what was sent, then re-raised to shrink
            shown = {key: value for key, value in sent.items() if key != "headers"}
            report.failures.append(
                f"{label} -> {response.status_code} {response.text[:300]}\n"
                f"  sent: {shown}\n  {str(error)[:600]}"
            )
            raise

    return one  # type: ignore[no-any-return]
