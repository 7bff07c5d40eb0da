"""Test helpers: an authenticated API client, loopback receivers, live servers."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from hookline.platform.accounts import NewApiKey


class ApiClient:
    """httpx client that carries a bearer token for one account."""

    def __init__(self, http: httpx.AsyncClient, key: NewApiKey) -> None:
        self.http = http
        self.key = key
        self.account_id = str(key.account_id)
        self.headers: dict[str, str] = {}

    async def login(self) -> None:
        response = await self.http.post("/token", json=self.credentials)
        response.raise_for_status()
        self.headers = {"Authorization": f"Bearer {response.json()['access_token']}"}

    @property
    def credentials(self) -> dict[str, str]:
        return {
            "accountId": self.account_id,
            "clientId": self.key.client_id,
            "clientSecret": self.key.client_secret,
        }

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return await self.http.request(method, url, headers=headers, **kwargs)

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", url, **kwargs)

    async def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PATCH", url, **kwargs)

    async def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", url, **kwargs)


class LiveServer:
    """``hookline serve`` in a real subprocess on a free loopback port."""

    def __init__(self, env: dict[str, str], *, args: tuple[str, ...] = ()) -> None:
        self.env = env
        self.args = args
        self.port = free_port()
        self.process: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> LiveServer:
        import subprocess
        import sys
        import time

        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hookline.cli.main",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                *self.args,
            ],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.process.stdout.read().decode(errors="replace")
                raise RuntimeError(f"hookline serve exited early:\n{output}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # polling another process's readiness: no event to await
        self.stop()
        raise TimeoutError("hookline serve did not become healthy")

    def stop(self) -> str:
        if self.process is None:
            return ""
        self.process.terminate()
        try:
            output, _ = self.process.communicate(timeout=15)
        except Exception:
            self.process.kill()
            output, _ = self.process.communicate()
        self.process = None
        return output.decode(errors="replace") if output else ""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Ticks:
    """Passed as a periodic service's ``ticked`` callback: tests await the service's next
    completed tick, then look at its effects, instead of polling the database on a timer."""

    def __init__(self) -> None:
        self.count = 0
        self._ticked = asyncio.Event()

    def __call__(self) -> None:
        self.count += 1
        self._ticked.set()

    async def next(self, timeout: float = 10.0) -> None:
        """Wait for a tick completed after the previous call returned (or before the first)."""
        await asyncio.wait_for(self._ticked.wait(), timeout)
        self._ticked.clear()
