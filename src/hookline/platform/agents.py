"""(to be filled in)"""

from __future__ import annotations

import asyncio

from hookline.runtime import Runtime


async def run_agent_watchdog(runtime: Runtime, stop: asyncio.Event) -> None:
    await stop.wait()
