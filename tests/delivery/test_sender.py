"""The sender's HTTP exchange, against a real TCP server on loopback that answers with
scripted bytes: what goes on the wire, how every shape of response is read, and when a
connection is kept or dropped."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hookline.delivery.sender import Sender, SendResult
from tests.conftest import make_settings

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@dataclass
class Request:
    head: bytes
    body: bytes
    connection: int  # which connection (1, 2, ...) carried it

    def header(self, name: str) -> str | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower().encode():
                return value.strip().decode("latin-1")
        return None


@dataclass
class RawServer:
    """Reads requests (head + Content-Length body) and answers each with ``respond(request)``:
    raw bytes, then the connection is closed if ``close_after`` says so."""

    respond: Callable[[Request], bytes] = lambda request: OK
    close_after: Callable[[Request], bool] = lambda request: False
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                request = Request(head, b"", number)
                length = int(request.header("Content-Length") or 0)
                request.body = await reader.readexactly(length)
                async with self.arrived:
                    self.requests.append(request)
                    self.arrived.notify_all()
                writer.write(self.respond(request))
                await writer.drain()
                if self.close_after(request):
                    return
        finally:
            writer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook?x=1"


async def _twice(sender: Sender, raw_server: RawServer) -> tuple[SendResult, SendResult]:
    """Two deliveries one after the other: the second shows what became of the connection."""
    return (
        await sender.send(raw_server.url, b"{}", {}),
        await sender.send(raw_server.url, b"{}", {}),
    )


@pytest.fixture
async def raw_server() -> AsyncIterator[RawServer]:
    server = RawServer()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    yield server
    listener.close()


@pytest.fixture
async def sender(tmp_path: Path) -> AsyncIterator[Sender]:
    settings = make_settings(
        tmp_path, "sqlite", None, delivery_timeout=1.0, response_excerpt_bytes=16
    )
    async with Sender(settings) as sender:
        yield sender


async def test_the_request_on_the_wire(sender: Sender, raw_server: RawServer) -> None:
    body = b'{"event":"x","n":1}'
    result = await sender.send(
        raw_server.url, body, {"Content-Type": "application/json", "webhook-id": "abc"}
    )
    assert (result.status, result.excerpt, result.error_class) == (200, "ok", None)
    (request,) = raw_server.requests
    assert request.head.startswith(b"POST /hook?x=1 HTTP/1.1\r\n")
    assert request.header("Host") == f"127.0.0.1:{raw_server.port}"
    assert request.header("Content-Type") == "application/json"
    assert request.header("webhook-id") == "abc"
    assert request.header("Content-Length") == str(len(body))
    assert request.header("Cookie") is None and request.header("Authorization") is None
    assert request.body == body


async def test_keep_alive_reuses_one_connection(sender: Sender, raw_server: RawServer) -> None:
    for n in range(3):
        assert (await sender.send(raw_server.url, b"%d" % n, {})).status == 200
    assert [r.connection for r in raw_server.requests] == [1, 1, 1]


async def test_chunked_response_is_read_and_the_connection_kept(
    sender: Sender, raw_server: RawServer
) -> None:
    raw_server.respond = lambda request: (
        b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\nRetry-After: 7\r\n\r\n"
        b"4\r\nbusy\r\n5\r\n, try\r\n0\r\n\r\n"
    )
    first, second = await _twice(sender, raw_server)
    assert (first.status, first.excerpt, first.retry_after) == (503, "busy, try", "7")
    assert second.status == 503
    assert [r.connection for r in raw_server.requests] == [1, 1]


async def test_a_body_without_length_is_read_until_the_server_closes(
    sender: Sender, raw_server: RawServer
) -> None:
    raw_server.respond = lambda request: b"HTTP/1.1 200 OK\r\n\r\nuntil close"
    raw_server.close_after = lambda request: True
    first, second = await _twice(sender, raw_server)
    assert (first.status, first.excerpt, second.status) == (200, "until close", 200)
    assert [r.connection for r in raw_server.requests] == [1, 2]


async def test_only_an_excerpt_of_a_big_body_is_read_and_its_connection_dropped(
    sender: Sender, raw_server: RawServer
) -> None:
    big = b"x" * 1_000_000
    raw_server.respond = lambda request: (
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(big), big)
    )
    first, second = await _twice(sender, raw_server)
    assert (first.status, first.excerpt) == (200, "x" * 16)  # response_excerpt_bytes
    assert second.status == 200
    assert [r.connection for r in raw_server.requests] == [1, 2]


async def test_interim_100_continue_is_skipped(sender: Sender, raw_server: RawServer) -> None:
    raw_server.respond = lambda request: b"HTTP/1.1 100 Continue\r\n\r\n" + OK
    result = await sender.send(raw_server.url, b"{}", {})
    assert (result.status, result.excerpt) == (200, "ok")


async def test_an_upgrade_answer_is_an_outcome_and_its_connection_is_dropped(
    sender: Sender, raw_server: RawServer
) -> None:
    raw_server.respond = lambda request: (
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        if request.body == b"up"
        else OK
    )
    result = await sender.send(raw_server.url, b"up", {})
    assert (result.status, result.excerpt, result.error_class) == (101, None, None)
    assert result.duration_ms < 900  # not waiting for a body that never ends
    assert (await sender.send(raw_server.url, b"{}", {})).status == 200
    assert [r.connection for r in raw_server.requests] == [1, 2]


async def test_server_closing_without_an_answer_is_a_retryable_error(
    sender: Sender, raw_server: RawServer
) -> None:
    raw_server.respond = lambda request: b""
    raw_server.close_after = lambda request: True
    result = await sender.send(raw_server.url, b"{}", {})
    assert result.status is None and result.retryable_error
    assert result.error_class == "ServerDisconnectedError"


async def test_a_malformed_response_is_a_retryable_error(
    sender: Sender, raw_server: RawServer
) -> None:
    raw_server.respond = lambda request: b"SMTP ready\r\n\r\n"
    result = await sender.send(raw_server.url, b"{}", {})
    assert result.status is None and result.retryable_error
    assert result.error_class == "BadStatusLine"
    assert (await sender.send(raw_server.url, b"{}", {})).error_class == "BadStatusLine"
    assert [r.connection for r in raw_server.requests] == [1, 2]  # the broken one was dropped


async def test_a_silent_server_times_out_and_its_connection_is_dropped(
    sender: Sender, raw_server: RawServer
) -> None:
    raw_server.respond = lambda request: b"" if request.body == b"silent" else OK
    result = await sender.send(raw_server.url, b"silent", {})
    assert (result.status, result.error_class, result.retryable_error) == (
        None,
        "TimeoutError",
        True,
    )
    assert 900 <= result.duration_ms < 5000  # delivery_timeout=1.0
    assert (await sender.send(raw_server.url, b"{}", {})).status == 200
    assert [r.connection for r in raw_server.requests] == [1, 2]


async def test_a_line_break_in_a_header_is_refused_and_nothing_is_sent(
    sender: Sender, raw_server: RawServer
) -> None:
    result = await sender.send(raw_server.url, b"{}", {"webhook-id": "a\r\nX-Evil: 1"})
    assert (result.status, result.error_class, result.retryable_error) == (
        None,
        "ValueError",
        False,
    )
    assert raw_server.connections == 0


async def test_credentials_in_the_url_become_basic_auth(
    sender: Sender, raw_server: RawServer
) -> None:
    url = f"http://user:p%40ss@127.0.0.1:{raw_server.port}/in"
    assert (await sender.send(url, b"{}", {})).status == 200
    (request,) = raw_server.requests
    assert request.head.startswith(b"POST /in HTTP/1.1\r\n")
    assert request.header("Host") == f"127.0.0.1:{raw_server.port}"
    assert request.header("Authorization") == "Basic " + base64.b64encode(b"user:p@ss").decode()


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "http:///nohost", "not a url"])
async def test_urls_that_cannot_be_posted_to_are_permanent_errors(sender: Sender, url: str) -> None:
    result = await sender.send(url, b"{}", {})
    assert result.status is None and not result.retryable_error
    assert result.error_class in {"InvalidURL", "ValueError"}
