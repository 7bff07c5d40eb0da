"""Request guard: refuses, before any route runs, the inputs no route can take.

- a JSON endpoint called with another ``content-type`` (415);
- a JSON body nested deeper than ``MAX_JSON_DEPTH`` (400): Python's parser and every
  recursive walk after it (validation, encoding) would otherwise hit the recursion limit;
- a NUL character anywhere in the path, the query or a body (400): PostgreSQL cannot store
  it in text while SQLite can, and the two backends must answer alike.

The checks cost microseconds on ordinary bodies (``POST /events`` is the hot path): bytes are
counted and searched in C (``bytes.count``, ``bytes.find``; not ``in``, which on bytes first
tries its operand as an integer and raises and clears a TypeError every time), and the exact,
string-aware scans run only when that cheap pass says the body might be refused.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hookline.api.errors import error_body
from hookline.error_codes import ErrorCode

MAX_JSON_DEPTH = 64

# Routes that take HTML forms rather than JSON: the dashboard and the activation page.
FORM_PREFIXES = ("/ui/", "/activation/")

_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(value for value in range(256) if value not in b"[]{}")


class BodyRefused(HTTPException):
    """Raised from the body stream: every route (FastAPI's body parsing, or a route reading
    the stream itself) lets an ``HTTPException`` through to the error handlers."""

    def __init__(self, status_code: int, message: str, error_code: str) -> None:
        super().__init__(status_code, message)
        self.error_code = error_code


def outside_strings(body: bytes) -> bytes:
    """The body without its string literals, in C-speed passes (a regex costs ~0.5 us per
    string): drop escaped backslashes, then escaped quotes, then every other quoted span."""
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"".join(unescaped.split(b'"')[0::2])


def json_nesting_problem(body: bytes, limit: int = MAX_JSON_DEPTH) -> str | None:
    """Why the body's brackets (outside strings) cannot be parsed safely, or None: nested
    deeper than ``limit``, or unbalanced (a parser would recurse into every unclosed one)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return None  # fewer opening brackets than the limit: cannot nest deeper
    brackets = outside_strings(body).translate(_BRACKETS, _NOT_BRACKETS)
    # Each pass removes the innermost level (the pairs with nothing left inside).
    for _ in range(limit):
        shorter = brackets.replace(b"[]", b"")
        if not shorter:
            return None
        if shorter == brackets:
            return "The body is not valid JSON: unbalanced brackets"
        brackets = shorter
    return f"The JSON body is nested deeper than {limit} levels"


def has_nul(body: bytes) -> bool:
    """A ``\\u0000`` escape that is not itself escaped (``\\\\u0000``). A raw NUL byte is
    not valid JSON: the parser refuses it (400) on its own."""
    return body.find(b"\\u0000") >= 0 and _NUL_ESCAPE.search(body) is not None


def is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


class RequestGuard:
    """Pure ASGI middleware (no per-request task or body copy)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["query_string"].find(b"%00") >= 0 or scope.get("raw_path", b"").find(b"%00") >= 0:
            await _answer(send, 400, _NUL_MESSAGE, ErrorCode.NUL_CHARACTER)
            return
        content_type: bytes | None = None
        has_body = False
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                has_body = value.strip() not in (b"0", b"")
            elif name == b"transfer-encoding":
                has_body = True
        if not has_body:
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith(FORM_PREFIXES) or scope["path"] == "/ui":
            await self.app(scope, _BodyCheck(receive, json=False), send)
            return
        if content_type is not None and not is_json(content_type):
            await _answer(
                send,
                415,
                "This endpoint takes JSON: send content-type: application/json",
                ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            )
            return
        await self.app(scope, _BodyCheck(receive, json=True), send)


_NUL_MESSAGE = "NUL characters (\\u0000, %00) are not accepted"


class _BodyCheck:
    """Wraps ``receive``: checks the whole body when its last chunk arrives, before the route
    sees that chunk (a route only parses a complete body)."""

    __slots__ = ("chunks", "json", "receive")

    def __init__(self, receive: Receive, *, json: bool) -> None:
        self.receive = receive
        self.json = json
        self.chunks: list[bytes] = []

    async def __call__(self) -> Message:
        message = await self.receive()
        if message["type"] != "http.request":
            return message
        chunk = message.get("body", b"")
        if chunk:
            self.chunks.append(chunk)
        if not message.get("more_body", False) and self.chunks:
            body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
            self.chunks = []
            self._check(body)
        return message

    def _check(self, body: bytes) -> None:
        if self.json:
            problem = json_nesting_problem(body)
            if problem is not None:
                raise BodyRefused(400, problem, ErrorCode.INVALID_BODY)
            if has_nul(body):
                raise BodyRefused(400, _NUL_MESSAGE, ErrorCode.NUL_CHARACTER)
        elif b"%00" in body or b"\x00" in body:
            raise BodyRefused(400, _NUL_MESSAGE, ErrorCode.NUL_CHARACTER)


async def _answer(send: Send, status: int, message: str, error_code: str) -> None:
    content = orjson.dumps(error_body(message, error_code=error_code))
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode()),
    ]
    start: dict[str, Any] = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": content})
