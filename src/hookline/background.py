"""Long-running tasks of a process: delivery workers and the platform's schedulers.

Each service is an async callable that runs until cancelled; ``hookline serve`` runs them all
beside the API, ``hookline worker`` runs them without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from hookline.runtime import Runtime

log = logging.getLogger(__name__)

Service = Callable[[Runtime, asyncio.Event], Awaitable[None]]


def registered_services() -> list[tuple[str, Service]]:
    """The services every process runs: delivery first, then the platform's schedulers."""
    from hookline.delivery.retention import run_retention
    from hookline.delivery.webhooks import run_secret_expiry
    from hookline.delivery.worker import run_delivery_worker
    from hookline.platform.agents import run_agent_watchdog
    from hookline.platform.connectors import run_pos_pollers
    from hookline.platform.issues import run_issue_autoclose
    from hookline.platform.scheduler import run_flow_scheduler

    return [
        ("delivery-worker", run_delivery_worker),
        ("agent-watchdog", run_agent_watchdog),
        ("flow-scheduler", run_flow_scheduler),
        ("issue-autoclose", run_issue_autoclose),
        ("pos-pollers", run_pos_pollers),
        ("secret-expiry", run_secret_expiry),
        ("retention", run_retention),
    ]


class BackgroundServices:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for name, service in registered_services():
            task = asyncio.create_task(self._supervise(name, service), name=f"hookline:{name}")
            self._tasks.append(task)

    async def _supervise(self, name: str, service: Service) -> None:
        """Restart a crashed service after a pause, so one bug cannot stop deliveries."""
        while not self._stop.is_set():
            try:
                await service(self.runtime, self._stop)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background service %s crashed; restarting in 1 s", name)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=1.0)

    async def stop(self, timeout: float = 10.0) -> None:
        from hookline.platform.runners import drain

        self._stop.set()
        # Let flow runs started by this process record their result before the pool closes.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(drain(), timeout=timeout)
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._tasks.clear()

    async def run_forever(self) -> None:
        await self.start()
        await self._stop.wait()
