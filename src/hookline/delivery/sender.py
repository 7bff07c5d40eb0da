"""The HTTP side of delivery: aiohttp's pooled, guarded connector and response parser, with
the request written in one piece.

Connections are kept alive and reused per host (the connector allows at most
``delivery_per_host_concurrency`` per host); redirects are never followed (a 3xx is an
outcome like any other); only the first ``response_excerpt_bytes`` of a response body are
read (a gzip or deflate body is inflated only that far); no cookie is ever stored or sent.

Why not ``ClientSession.post``: a delivery is always the same shape (one POST of bytes we
built, headers we built, to a URL we validated), and a session spends more CPU per request
on generality we never use (header merging, cookies, redirects, proxies, auth, a body-writer
task per request on Python < 3.12) than the rest of a delivery costs. Everything that needs
care stays aiohttp's: DNS, the SSRF guard in the resolver, TLS, the connection pool and its
limits, keep-alive bookkeeping, and parsing the response (llhttp).

This leans on aiohttp below its session API (``BaseConnector.connect``, the connection's
``ResponseHandler``: ``set_response_params``, ``read``, ``_parser``), which is why aiohttp is
pinned; ``tests/delivery/test_sender.py`` exercises every part of it against a raw server, so
an upgrade that changes them fails there first.
"""

from __future__ import annotations

import asyncio
import functools
import time
import zlib
from typing import NamedTuple
from urllib.parse import urlsplit

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ClientRequest
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.streams import EofStream, StreamReader
from yarl import URL

from hookline.config import Settings
from hookline.delivery.ssrf import BlockedAddress, OutboundGuard, guarded_connector
from hookline.delivery.tls import outbound_ssl

#: Exceptions meaning "the request could not be made and never will be": no retry.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    BlockedAddress,
    aiohttp.InvalidURL,
    ValueError,
)
#: Exceptions meaning "this attempt failed on the way": retry on the schedule.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TimeoutError,
    aiohttp.ClientError,
    HttpProcessingError,
    EofStream,
    OSError,
)
_SCHEMES = frozenset({"http", "https"})
_NO_TRACES: list[aiohttp.tracing.Trace] = []


class SendResult(NamedTuple):
    """One request's outcome (a named tuple: one per delivery, built in a fifth of the time a
    frozen dataclass takes)."""

    status: int | None  # None when no response was received
    duration_ms: float
    error_class: str | None = None
    retryable_error: bool = True
    excerpt: str | None = None
    retry_after: str | None = None
    # The header blocks as on the wire ("Name: value" lines joined by CRLF), for the log.
    request_headers: str | None = None  # None when the request could not be built
    response_headers: str | None = None  # None when no response was received


@functools.lru_cache(maxsize=4096)
def host_key(url: str) -> str:
    """``scheme://netloc`` in lower case: what concurrency is limited per (cached: a worker
    sends to the same few URLs over and over)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class _Target(NamedTuple):
    """What is fixed for one URL: computed once, then reused for every delivery to it."""

    request: ClientRequest  # read by the connector only: pool key, host, port, TLS
    head: bytes  # request line, Host (and Authorization for credentials in the URL)


class Sender:
    def __init__(self, settings: Settings, guard: OutboundGuard | None = None) -> None:
        self.settings = settings
        self.guard = guard or OutboundGuard(settings.outbound_allowlist)
        self._per_host = max(1, settings.delivery_per_host_concurrency)
        self._targets: dict[str, _Target] = {}
        self._total = settings.delivery_timeout
        self._connect_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=settings.delivery_connect_timeout
        )
        self._excerpt_bytes = max(0, settings.response_excerpt_bytes)
        self._connector: aiohttp.TCPConnector | None = None

    async def __aenter__(self) -> Sender:
        self._connector = guarded_connector(
            self.guard,
            limit=max(1, self.settings.delivery_concurrency),
            limit_per_host=self._per_host,
            ttl_dns_cache=30,
            enable_cleanup_closed=True,
            ssl=outbound_ssl(self.settings.outbound_ca_file),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._connector is not None:
            await self._connector.close()
            self._connector = None

    def _target(self, url: str) -> _Target:
        """Parse and check ``url`` once (cached: a worker sends to the same few URLs over and
        over, and parsing one costs more than signing the request)."""
        target = self._targets.get(url)
        if target is not None:
            return target
        parsed = URL(url)
        if parsed.scheme not in _SCHEMES or not parsed.raw_host:
            raise aiohttp.InvalidURL(url)
        lines = [
            f"POST {parsed.raw_path_qs or '/'} HTTP/1.1",
            f"Host: {parsed.host_port_subcomponent}",
        ]
        if parsed.raw_user is not None:  # credentials in the URL: HTTP basic auth, as a
            auth = aiohttp.BasicAuth.from_url(parsed)  # session would send it
            if auth is not None:
                lines.append(f"Authorization: {auth.encode()}")
            parsed = parsed.with_user(None)
        _check_header_text("".join(lines))
        head = "\r\n".join(lines) + "\r\n"
        request = ClientRequest("POST", parsed, loop=asyncio.get_running_loop(), ssl=True)
        if len(self._targets) > 10_000:
            self._targets.clear()
        target = self._targets[url] = _Target(request, head.encode("latin-1"))
        return target

    async def send(self, url: str, body: bytes, headers: dict[str, str]) -> SendResult:
        """POST ``body``; never raises for what the network or the receiver did.

        The caller bounds concurrency per host (the worker's lanes); the connector's
        ``limit_per_host`` is the backstop.
        """
        assert self._connector is not None, "use `async with Sender(...)`"
        started = time.perf_counter()
        block: str | None = None
        try:
            target = self._target(url)
            block = _header_block(headers, body)
            request = b"".join((target.head, block.encode("latin-1"), b"\r\n\r\n", body))
            async with asyncio.timeout(self._total):
                status, excerpt, retry_after, received = await self._exchange(target, request)
            return SendResult(
                status,
                (time.perf_counter() - started) * 1000.0,
                excerpt=excerpt,
                retry_after=retry_after,
                request_headers=block,
                response_headers=received,
            )
        except aiohttp.ClientSSLError as error:
            # Before PERMANENT_ERRORS: a certificate error is a ValueError too, but receivers
            # renew certificates, so it is retried on the schedule.
            return _failure(started, error, retryable=True, sent=block)
        except PERMANENT_ERRORS as error:
            return _failure(started, error, retryable=False, sent=block)
        except TRANSIENT_ERRORS as error:
            return _failure(started, _explained(error), retryable=True, sent=block)

    async def _exchange(
        self, target: _Target, request: bytes
    ) -> tuple[int, str | None, str | None, str]:
        """Write ``request`` on a pooled connection and read the response's status line,
        headers (as one text block) and excerpt; the connection goes back to the pool only
        when the response was read to its end and the server allows keep-alive."""
        assert self._connector is not None
        conn = await self._connector.connect(target.request, _NO_TRACES, self._connect_timeout)
        try:
            protocol = conn.protocol
            assert protocol is not None
            if protocol._parser is None:  # a new connection: one parser for its lifetime
                _prepare(protocol)
            transport = protocol.transport
            if transport is None:
                raise aiohttp.ServerDisconnectedError("connection closed before the request")
            transport.write(request)
            message, payload = await protocol.read()
            while 100 <= message.code < 200 and message.code != 101:  # interim responses
                message, payload = await protocol.read()
            status = message.code
            excerpt = await self._read_excerpt(payload, message.headers.get("Content-Encoding"))
        except BaseException:
            conn.close()
            raise
        if payload.is_eof():
            conn.release()  # the connector keeps it unless the server asked to close
        else:
            conn.close()  # unread rest: drop this connection rather than drain it
        retry_after = None if status < 300 else message.headers.get("Retry-After")
        received = b"\r\n".join(map(b": ".join, message.raw_headers))  # under a µs
        return status, excerpt, retry_after, _storable(received.decode("latin-1"))

    async def _read_excerpt(self, payload: StreamReader, encoding: str | None) -> str | None:
        """At most ``response_excerpt_bytes`` of the body: a huge reply cannot exhaust memory.

        A compressed body is read as it came and only its excerpt is inflated, bounded: the
        parser's own decompression inflated whole chunks, and a gzip bomb (200 MB of zeros in
        200 KB) cost the worker's event loop half a second per response."""
        remaining = self._excerpt_bytes
        if remaining == 0:
            return None
        chunks: list[bytes] = []
        while remaining > 0:
            chunk = await payload.read(remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        if not chunks:
            return None
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if encoding:
            data = _inflate(data, encoding.strip().lower(), self._excerpt_bytes)
        return _storable(data.decode("utf-8", errors="replace"))


def _storable(text: str) -> str:
    """``text`` with NUL characters replaced: PostgreSQL's text refuses them (SQLite does
    not), and a gzip bomb's excerpt is nothing but NULs. Both backends keep the same text."""
    return text.replace("\0", "\ufffd") if "\0" in text else text


def _failure(
    started: float, error: BaseException, *, retryable: bool, sent: str | None = None
) -> SendResult:
    return SendResult(
        None,
        (time.perf_counter() - started) * 1000.0,
        error_class=type(error).__name__,
        retryable_error=retryable,
        excerpt=_storable(str(error)[:200]) or None,
        request_headers=sent,
    )


def _explained(error: BaseException) -> BaseException:
    """The error that says what went wrong: aiohttp's own for a connection closed before the
    answer, the parser's for a malformed answer (aiohttp wraps it)."""
    if isinstance(error, EofStream):
        return aiohttp.ServerDisconnectedError("connection closed before a response")
    if isinstance(error, HttpProcessingError) and isinstance(error.__cause__, HttpProcessingError):
        return error.__cause__
    return error


def _prepare(protocol: ResponseHandler) -> None:
    """Give a new connection its response parser, with a session's defaults (a body without
    a length is read until the server closes the connection)."""
    protocol.set_response_params(read_until_eof=True, auto_decompress=False)


def _inflate(data: bytes, encoding: str, limit: int) -> bytes:
    """At most ``limit`` bytes of what ``data`` (the start of a gzip or deflate body) holds;
    other encodings (and a broken stream) are kept as they came."""
    if encoding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        wbits = zlib.MAX_WBITS  # zlib-wrapped, as HTTP means it
    else:
        return data
    try:
        return zlib.decompressobj(wbits).decompress(data, limit)
    except zlib.error:
        return data


def _header_block(headers: dict[str, str], body: bytes) -> str:
    """``headers`` and ``Content-Length`` as written after the request line and Host, without
    the blank line that ends them: sent on the wire and kept in the attempt's log."""
    lines = [f"{name}: {value}" for name, value in headers.items()]
    _check_header_text("".join(lines))
    lines.append(f"Content-Length: {len(body)}")
    return "\r\n".join(lines)


def _check_header_text(text: str) -> None:
    """Refuse a line break inside a header (it would let a value inject headers)."""
    if "\r" in text or "\n" in text:
        raise ValueError("line break in a request header")
