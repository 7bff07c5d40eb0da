"""(to be filled in)"""

from __future__ import annotations

import asyncio

from hookline.runtime import Runtime


async def run_issue_autoclose(runtime: Runtime, stop: asyncio.Event) -> None:
    await stop.wait()
