"""Dashboard fixtures: signed-in httpx clients for fresh accounts, against the in-process app."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from hookline.api.app import create_app
from hookline.platform.accounts import NewApiKey, create_account
from hookline.runtime import Runtime

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Dashboard:
    """One browser-like client (cookie jar) for one account."""

    def __init__(self, http: httpx.AsyncClient, key: NewApiKey) -> None:
        self.http = http
        self.key = key

    async def login_form_token(self) -> str:
        page = await self.http.get("/ui/login")
        assert page.status_code == 200
        return csrf_of(page.text)

    async def login(self) -> httpx.Response:
        token = await self.login_form_token()
        return await self.http.post(
            "/ui/login",
            data={
                "csrf": token,
                "accountId": str(self.key.account_id),
                "clientId": self.key.client_id,
                "clientSecret": self.key.client_secret,
            },
        )

    async def csrf(self, page: str = "/ui/") -> str:
        response = await self.http.get(page)
        assert response.status_code == 200, response.text
        return csrf_of(response.text)

    async def post(self, url: str, data: dict[str, str] | None = None) -> httpx.Response:
        """A form POST carrying this session's CSRF token, as the pages' forms do."""
        return await self.http.post(url, data={"csrf": await self.csrf(), **(data or {})})


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


@pytest.fixture
async def dashboards(runtime: Runtime) -> AsyncIterator[Callable[[], Awaitable[Dashboard]]]:
    """Factory: each call makes a fresh account and a signed-in client for it."""
    app = create_app(runtime, run_background=False)
    clients: list[httpx.AsyncClient] = []

    async def make(sign_in: bool = True) -> Dashboard:
        async with runtime.db.transaction() as conn:
            key = await create_account(conn, "ui account", now=runtime.clock.now())
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://hookline.test"
        )
        clients.append(http)
        board = Dashboard(http, key)
        if sign_in:
            response = await board.login()
            assert response.status_code == 303, response.text
        return board

    yield make
    for http in clients:
        await http.aclose()
