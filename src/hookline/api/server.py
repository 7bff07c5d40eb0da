"""The HTTP server protocol of ``hookline serve``: uvicorn's httptools protocol with a bound
on the request head.

httptools (llhttp) buffers a request's line and headers without limit, so one client could
hold megabytes of server memory per connection with a single oversized header. This protocol
counts the bytes received while a head is being read and answers ``431 Request Header Fields
Too Large`` (in the contract's error shape) as soon as they pass ``MAX_HEAD_BYTES``; the
connection is then closed. Bodies are not affected (routes bound those themselves).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hookline.error_codes import ErrorCode

MAX_HEAD_BYTES = 64 * 1024

_BODY = orjson.dumps(
    {
        "message": f"Request line and headers are larger than {MAX_HEAD_BYTES} bytes",
        "status": "error",
        "detail": "",
        "error_code": ErrorCode.HEADERS_TOO_LARGE,
    }
)
_RESPONSE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\n"
    b"content-length: " + str(len(_BODY)).encode() + b"\r\n"
    b"connection: close\r\n\r\n" + _BODY
)


class BoundedHeadProtocol(HttpToolsProtocol):
    """``uvicorn.Config(http=BoundedHeadProtocol)``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0  # bytes received since the head began (bounds memory)
        self._parsed_head = 0  # request line and header bytes as parsed (exact)
        self._too_large = False

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Still inside the head after taking in more than the limit: refuse now, without
        # buffering the rest. (A head that ends inside the chunk is measured exactly by the
        # parser callbacks below.)
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES:
            self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._parsed_head = 0

    def on_url(self, url: bytes) -> None:
        self._parsed_head += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed_head += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._parsed_head > MAX_HEAD_BYTES:
            self._too_large = True
            # The parser turns this into HttpParserError; uvicorn then calls
            # send_400_response, which answers 431 instead. The request never starts.
            raise ValueError("request head too large")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self._refuse()
        else:
            super().send_400_response(msg)

    def _refuse(self) -> None:
        self._in_head = False
        transport: asyncio.Transport = self.transport
        if not transport.is_closing():
            transport.write(_RESPONSE)
            transport.close()
