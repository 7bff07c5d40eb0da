"""``GET /stream/events`` (hookline extension): the account's events as server-sent events.

What ``hookline listen`` connects to: the client opens the connection, so the server never
calls back into a developer's machine and the outbound address guard stays on. Each event
comes with the exact body a webhook would receive and the headers a real delivery carries,
signed with the secret the client sent in ``X-Hookline-Signing-Secret`` (unsigned without
one), so the client can verify them and forward both to a local app unchanged.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

import anyio
import jwt
import orjson
from fastapi import APIRouter, Header, Query, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from hookline.api.deps import AccountId, RuntimeDep
from hookline.catalog import BY_NAME
from hookline.delivery.signing import SigningKey, delivery_headers
from hookline.delivery.streams import KEEPALIVE, Stream, StreamEnd, StreamHub
from hookline.error_codes import ErrorCode
from hookline.errors import InvalidRequest
from hookline.store.event_feed import FeedEvent

router = APIRouter(tags=["hookline"])

END_MESSAGES = {
    StreamEnd.SHUTDOWN: "the server is shutting down",
    StreamEnd.IDLE: "no event for {idle:g} s (HOOKLINE_STREAM_IDLE_SECONDS)",
    StreamEnd.TOKEN_EXPIRED: "the access token expired; sign in again and resume",
}


def stream_hub(request: Request) -> StreamHub:
    """This app's hub, made on first use."""
    hub: StreamHub | None = getattr(request.app.state, "stream_hub", None)
    if hub is None:
        hub = request.app.state.stream_hub = StreamHub(request.app.state.runtime)
    return hub


async def close_streams(app: object) -> None:
    """End every open stream of ``app`` (call before a server's graceful shutdown, which
    otherwise waits for open streams forever) and refuse new ones."""
    state = getattr(app, "state", None)
    hub: StreamHub | None = getattr(state, "stream_hub", None)
    if hub is None and state is not None:
        hub = state.stream_hub = StreamHub(state.runtime)
    if hub is not None:
        await hub.shutdown()


@router.get("/stream/events")
async def stream_events(
    request: Request,
    runtime: RuntimeDep,
    account_id: AccountId,
    event: Annotated[list[str] | None, Query(description="Only these event types.")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    signing_secret: Annotated[
        str | None, Header(alias="X-Hookline-Signing-Secret", max_length=100)
    ] = None,
) -> Response:
    types = frozenset(name for value in event or () for name in value.split(",") if name)
    unknown = sorted(types - set(BY_NAME))
    if unknown:
        raise InvalidRequest(
            "Unknown event type", detail=", ".join(unknown), error_code=ErrorCode.UNKNOWN_EVENT
        )
    resume_after = None
    if last_event_id:
        try:
            resume_after = uuid.UUID(last_event_id)
        except ValueError:
            raise InvalidRequest(
                "Last-Event-ID is not an event id", detail=last_event_id[:100]
            ) from None
    stream = await stream_hub(request).open(
        account_id,
        types=types,
        resume_after=resume_after,
        expires_at=_token_expiry(request),
    )
    key = SigningKey.from_secret(signing_secret) if signing_secret else None
    return EventStreamResponse(stream, key, runtime.settings.stream_idle_seconds)


def _token_expiry(request: Request) -> datetime | None:
    """When the (already verified) bearer token expires: the stream ends then."""
    token = request.headers.get("authorization", "").partition(" ")[2]
    try:
        exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    except (jwt.PyJWTError, KeyError):
        return None
    return datetime.fromtimestamp(int(exp), UTC)


class EventStreamResponse(Response):
    """``text/event-stream`` for one :class:`Stream`; gives its slot back however it ends
    (client gone, stream ended, server shutting down)."""

    media_type = "text/event-stream"

    def __init__(self, stream: Stream, key: SigningKey | None, idle_seconds: float) -> None:
        super().__init__(
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
            media_type=self.media_type,
        )
        # A stream has no length: no Content-Length, so the body is sent as it comes.
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.stream = stream
        self.key = key
        self.idle_seconds = idle_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async with anyio.create_task_group() as group:

                async def watch() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()  # the client went away

                group.start_soon(watch)
                await self._send(send, _message("ready", self._ready()))
                async for item in self.stream.items():
                    if item is KEEPALIVE:
                        await self._send(send, b": keepalive\n\n")
                    elif isinstance(item, StreamEnd):
                        message = END_MESSAGES[item].format(idle=self.idle_seconds)
                        await self._send(
                            send, _message("end", {"reason": item.value, "message": message})
                        )
                    elif isinstance(item, list):
                        await self._send(send, b"".join(self._event(e) for e in item))
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                group.cancel_scope.cancel()
        except OSError:
            pass  # the client went away mid-write
        finally:
            self.stream.close()

    @staticmethod
    async def _send(send: Send, chunk: bytes) -> None:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})

    def _ready(self) -> dict[str, object]:
        return {
            "accountid": str(self.stream.account_id),
            "events": sorted(self.stream.types) or None,
            "signed": self.key is not None,
            "idle_seconds": self.idle_seconds,
        }

    def _event(self, event: FeedEvent) -> bytes:
        message_id = str(event.id)
        headers = delivery_headers(
            message_id=message_id,
            timestamp=int(datetime.now(UTC).timestamp()),
            body=event.payload,
            key=self.key,
        )
        data = {
            "eventid": message_id,
            "event": event.event,
            "consumerid": str(event.consumer_id) if event.consumer_id else None,
            "created": event.created_at.isoformat(),
            "headers": headers,
            "body": event.payload.decode("utf-8"),
        }
        return b"id: %s\n%s" % (message_id.encode(), _message("event", data))


def _message(kind: str, data: object) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (kind.encode(), orjson.dumps(data))
