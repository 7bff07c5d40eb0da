"""(to be filled in)"""

from __future__ import annotations

import asyncio

from hookline.runtime import Runtime


async def run_delivery_worker(runtime: Runtime, stop: asyncio.Event) -> None:
    await stop.wait()
