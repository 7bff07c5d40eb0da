"""The runners a process knows, by name: one registry per runtime, built-ins included."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from hookline.error_codes import ErrorCode
from hookline.errors import InvalidRequest
from hookline.platform.runners.external import ExternalRunner
from hookline.platform.runners.http import HttpRunner
from hookline.platform.runners.types import Runner

if TYPE_CHECKING:
    from hookline.runtime import Runtime


def runner_name(execution: dict[str, Any]) -> str:
    """The runner a flow's execution definition names; without one, ``http`` for a flow with
    a ``url`` and ``external`` for any other."""
    name = execution.get("runner")
    if name:
        return str(name)
    return "http" if execution.get("url") else "external"


class RunnerRegistry:
    def __init__(self, runners: Iterable[Runner] | None = None) -> None:
        """``runners`` exactly, or the built-in ones (``http`` and ``external``)."""
        chosen = (HttpRunner(), ExternalRunner()) if runners is None else runners
        self._runners: dict[str, Runner] = {runner.name: runner for runner in chosen}

    def register(self, runner: Runner) -> None:
        self._runners[runner.name] = runner

    def names(self) -> list[str]:
        return sorted(self._runners)

    def find(self, name: str) -> Runner | None:
        return self._runners.get(name)

    def get(self, name: str) -> Runner:
        runner = self._runners.get(name)
        if runner is None:
            raise InvalidRequest(
                f"Unknown runner {name!r}; known: {', '.join(self.names())}",
                error_code=ErrorCode.INVALID_RUNNER,
            )
        return runner

    def is_resumable(self, name: str) -> bool:
        runner = self._runners.get(name)
        return runner is not None and runner.resumable

    def validate(self, execution: dict[str, Any]) -> None:
        """A flow's execution definition: a known runner that accepts it, a sane timeout."""
        self.get(runner_name(execution)).validate(execution)
        timeout = execution.get("timeout_seconds")
        if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
            raise InvalidRequest(
                "execution.timeout_seconds must be a positive number",
                error_code=ErrorCode.INVALID_RUNNER,
            )


def runners_of(runtime: Runtime) -> RunnerRegistry:
    """The runtime's registry (made with the built-ins on first use)."""
    return runtime.component(RunnerRegistry)
