"""The HTTP side of delivery: one pooled aiohttp session, guarded against internal addresses.

Connections are kept alive and reused per host (the connector allows at most
``delivery_per_host_concurrency`` per host); redirects are never followed; only the first
``response_excerpt_bytes`` of a response body are read.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from hookline.config import Settings
from hookline.delivery.ssrf import BlockedAddress, OutboundGuard, guarded_connector

#: Exceptions meaning "the request could not be made and never will be": no retry.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    BlockedAddress, aiohttp.InvalidURL, ValueError,
)


class SendResult(NamedTuple):
    """One request's outcome (a named tuple: one per delivery, built in a fifth of the time a
    frozen dataclass takes)."""

    status: int | None  # None when no response was received
    duration_ms: float
    error_class: str | None = None
    retryable_error: bool = True
    excerpt: str | None = None
    retry_after: str | None = None


@functools.lru_cache(maxsize=4096)
def host_key(url: str) -> str:
    """``scheme://netloc`` in lower case: what concurrency is limited per (cached: a worker
    sends to the same few URLs over and over)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class Sender:
    def __init__(self, settings: Settings, guard: OutboundGuard | None = None) -> None:
        self.settings = settings
        self.guard = guard or OutboundGuard(settings.outbound_allowlist)
        self._per_host = max(1, settings.delivery_per_host_concurrency)
        self._urls: dict[str, URL] = {}
        self._timeout = aiohttp.ClientTimeout(
            total=settings.delivery_timeout, sock_connect=settings.delivery_connect_timeout,
        )
        self._excerpt_bytes = max(0, settings.response_excerpt_bytes)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Sender:
        connector = guarded_connector(
            self.guard,
            limit=max(1, self.settings.delivery_concurrency),
            limit_per_host=self._per_host,
            ttl_dns_cache=30,
            enable_cleanup_closed=True,
        )
        # No cookie jar: a cookie one receiver sets must never ride along on later deliveries
        # (possibly of other accounts) to the same host.
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, cookie_jar=aiohttp.DummyCookieJar()
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _url(self, url: str) -> URL:
        """The parsed URL, cached: a worker sends to the same few URLs over and over, and
        parsing one costs more than signing the request."""
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) > 10_000:
                self._urls.clear()
            parsed = self._urls[url] = URL(url)
        return parsed

    async def send(self, url: str, body: bytes, headers: dict[str, str]) -> SendResult:
        """POST ``body``; never raises for what the network or the receiver did.

        The caller bounds concurrency per host (the worker's lanes); the connector's
        ``limit_per_host`` is the backstop.
        """
        assert self._session is not None, "use `async with Sender(...)`"
        started = time.perf_counter()
        try:
            async with self._session.post(
                self._url(url), data=body, headers=headers, allow_redirects=False
            ) as response:
                excerpt = await self._read_excerpt(response)
                status = response.status
                return SendResult(
                    status=status,
                    duration_ms=(time.perf_counter() - started) * 1000.0,
                    excerpt=excerpt,
                    retry_after=None if status < 300 else response.headers.get("Retry-After"),
                )
        except PERMANENT_ERRORS as error:
            return SendResult(None, (time.perf_counter() - started) * 1000.0,
                              error_class=type(error).__name__, retryable_error=False,
                              excerpt=str(error)[:200])
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            return SendResult(None, (time.perf_counter() - started) * 1000.0,
                              error_class=type(error).__name__,
                              excerpt=str(error)[:200] or None)

    async def _read_excerpt(self, response: aiohttp.ClientResponse) -> str | None:
        """At most ``response_excerpt_bytes`` of the body: a huge reply cannot exhaust memory."""
        if self._excerpt_bytes == 0:
            return None
        length = response.content_length
        if length is not None and length <= self._excerpt_bytes:
            data = await response.read()  # small and of known size: one read
            return data.decode("utf-8", errors="replace") if data else None
        chunks: list[bytes] = []
        remaining = self._excerpt_bytes
        while remaining > 0:
            chunk = await response.content.read(remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        if remaining <= 0 and not response.content.at_eof():
            response.close()  # unread rest: drop this connection rather than drain it
        data = b"".join(chunks)
        return data.decode("utf-8", errors="replace") if data else None
