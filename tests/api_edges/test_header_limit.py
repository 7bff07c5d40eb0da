"""Issue 18, "Why" 4: ``hookline serve`` refuses an oversized request head with 431 (in the
contract's shape) instead of buffering it, and keeps serving ordinary requests. Transport
level, so one backend is enough."""

from __future__ import annotations

import contextlib
import json
import socket

import httpx
import pytest

from hookline.api.server import MAX_HEAD_BYTES


def _raw_request(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        # the server may answer and close before taking all of it: read the answer
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.timeout(120)
def test_an_8_mb_header_gets_431_and_the_server_keeps_serving(live_server) -> None:  # type: ignore[no-untyped-def]
    server = live_server()
    huge = b"x" * (8 * 1024 * 1024)
    answer = _raw_request(
        server.port, b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: " + huge + b"\r\n\r\n"
    )
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 431 Request Header Fields Too Large"
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["error_code"] == "ERROR_HEADERS_TOO_LARGE" and body["status"] == "error"
    # many headers that are each small but together too large: refused alike
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"y" * 1000) for i in range(MAX_HEAD_BYTES // 900))
    answer = _raw_request(server.port, b"GET /healthz HTTP/1.1\r\nHost: a\r\n" + many + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ")
    # an ordinary request, with a body bigger than the head limit, is served
    assert httpx.get(f"{server.url}/healthz", headers={"X-Ok": "y" * 4000}).status_code == 200
    big_body = httpx.post(
        f"{server.url}/token", json={"clientId": "x" * (2 * MAX_HEAD_BYTES)}, timeout=30
    )
    assert big_body.status_code == 422
