"""``hookline listen`` and ``hookline trigger``: see and provoke events while developing.

Both talk to a running hookline over its public HTTP API (with aiohttp), exactly like any
client, so they work against a local server as well as a remote one. ``listen`` opens a
stream to the server (``GET /stream/events``, server-sent events) over its own outbound
connection: the server never calls back into this machine, so its outbound address guard
stays on. Each event arrives with the headers of a real delivery, signed with a secret made
for this run; ``listen`` checks them with :mod:`hookline.verify`, prints the event, and can
forward it to a local app unchanged.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import signal
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import typer
from rich.console import Console
from rich.markup import escape

from hookline.catalog import BY_NAME, example_for
from hookline.cli.common import fail
from hookline.verify import InvalidSignature, verify

console = Console(highlight=False, soft_wrap=True)
error_console = Console(stderr=True, highlight=False, soft_wrap=True)

UrlOption = Annotated[
    str, typer.Option("--url", envvar="HOOKLINE_URL", help="Base URL of the hookline server.")
]
KeyFileOption = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        envvar="HOOKLINE_KEY_FILE",
        help="API key as JSON ({accountId, clientId, clientSecret}: what "
        "`hookline accounts create NAME --json` prints).",
    ),
]
AccountOption = Annotated[
    str | None,
    typer.Option("--account-id", envvar="HOOKLINE_ACCOUNT_ID", help="API key: account id."),
]
ClientIdOption = Annotated[
    str | None, typer.Option("--client-id", envvar="HOOKLINE_CLIENT_ID", help="API key: client id.")
]
ClientSecretOption = Annotated[
    str | None,
    typer.Option(
        "--client-secret", envvar="HOOKLINE_CLIENT_SECRET", help="API key: client secret."
    ),
]
DEFAULT_URL = "http://127.0.0.1:8000"
# Headers that describe one hop, not the message: never copied when forwarding.
HOP_HEADERS = {
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "accept-encoding",
}
KEY_FIELDS = ("accountId", "clientId", "clientSecret")


class ApiError(Exception):
    """A hookline API call failed; the message is the server's own explanation."""


@dataclass
class Credentials:
    account_id: str
    client_id: str
    client_secret: str
    source: str = "options"

    @classmethod
    def resolve(
        cls,
        key_file: Path | None,
        account_id: str | None,
        client_id: str | None,
        client_secret: str | None,
        url: str,
    ) -> Credentials:
        """From ``--key-file``, else the three options (or their variables), else the local
        development key (see :mod:`hookline.cli.devkey`); a one-line error otherwise."""
        if key_file is not None:
            return cls.from_key_file(key_file)
        given = {
            "HOOKLINE_ACCOUNT_ID / --account-id": account_id,
            "HOOKLINE_CLIENT_ID / --client-id": client_id,
            "HOOKLINE_CLIENT_SECRET / --client-secret": client_secret,
        }
        if any(given.values()):
            missing = [name for name, value in given.items() if not value]
            if missing:
                fail(f"missing credentials: {', '.join(missing)}", code=2)
            return cls(str(account_id), str(client_id), str(client_secret), "options")
        from hookline.cli.devkey import local_development_key

        local = local_development_key(url)
        if local is None:
            fail(
                "no credentials: pass --key-file key.json (from `hookline accounts create "
                "NAME --json > key.json`) or set HOOKLINE_KEY_FILE, or HOOKLINE_ACCOUNT_ID, "
                "HOOKLINE_CLIENT_ID and HOOKLINE_CLIENT_SECRET",
                code=2,
            )
        path, values = local
        account_id, client_id, client_secret = (values[name] for name in KEY_FIELDS)
        return cls(account_id, client_id, client_secret, source=str(path))

    @classmethod
    def from_key_file(cls, path: Path) -> Credentials:
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            fail(f"key file {path} does not exist", code=2)
        except OSError as error:
            fail(f"cannot read key file {path}: {error.strerror or error}", code=2)
        except ValueError as error:
            fail(f"key file {path} is not JSON: {error}", code=2)
        if not isinstance(values, dict):
            fail(f"key file {path} is not a JSON object", code=2)
        missing = [name for name in KEY_FIELDS if not isinstance(values.get(name), str)]
        if missing:
            fail(f"key file {path} lacks {', '.join(missing)}", code=2)
        account_id, client_id, client_secret = (values[name] for name in KEY_FIELDS)
        return cls(account_id, client_id, client_secret, source=str(path))


class HooklineClient:
    """The few API calls the developer tools need; a fresh token whenever the old one expired."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, creds: Credentials) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.creds = creds
        self._token: str | None = None

    async def _login(self) -> str:
        body = {
            "accountId": self.creds.account_id,
            "clientId": self.creds.client_id,
            "clientSecret": self.creds.client_secret,
        }
        try:
            data = await self._call("POST", "/token", json=body, auth=False)
        except ApiError as error:
            raise ApiError(f"{error} (API key from {self.creds.source})") from None
        self._token = data["access_token"]
        return self._token

    def forget_token(self) -> None:
        self._token = None

    async def _call(
        self, method: str, path: str, *, auth: bool = True, retried: bool = False, **kwargs: Any
    ) -> Any:
        headers = {}
        if auth:
            headers["Authorization"] = f"Bearer {self._token or await self._login()}"
        async with self.http.request(
            method, self.base_url + path, headers=headers, **kwargs
        ) as response:
            if response.status == 401 and auth and not retried:
                self._token = None  # expired: sign in again, once
                return await self._call(method, path, retried=True, **kwargs)
            text = await response.text()
            if response.status >= 400:
                raise ApiError(_error_message(response.status, text))
            return json.loads(text) if text else None

    @contextlib.asynccontextmanager
    async def open_stream(
        self, events: list[str], secret: str, last_event_id: str | None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """``GET /stream/events``: open until the server ends it or the connection drops
        (no read times out before 60 s; the server sends a keep-alive every 15 s)."""
        headers = {
            "Authorization": f"Bearer {self._token or await self._login()}",
            "Accept": "text/event-stream",
            "X-Hookline-Signing-Secret": secret,
        }
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        params = [("event", name) for name in events]
        timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=60)
        async with self.http.get(
            self.base_url + "/stream/events", headers=headers, params=params, timeout=timeout
        ) as response:
            if response.status >= 400:
                raise ApiError(_error_message(response.status, await response.text()))
            yield response

    async def send_event(self, body: dict[str, Any]) -> Any:
        return await self._call("POST", "/events", json=body)


def _error_message(status: int, text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return f"HTTP {status}: {text[:200]}"
    if isinstance(data, dict) and data.get("message"):
        detail = data.get("detail")
        extra = f" ({detail})" if detail and isinstance(detail, str) else ""
        if isinstance(detail, list):
            extra = " (" + "; ".join(str(item.get("msg", item)) for item in detail) + ")"
        return f"HTTP {status}: {data['message']}{extra}"
    return f"HTTP {status}: {text[:200]}"


def new_signing_secret() -> str:
    """A Standard Webhooks style secret: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def choose_events(requested: str | None) -> list[str]:
    """The requested event types (checked, without repeats); empty means every type."""
    if not requested:
        return []
    names = [name.strip() for name in requested.split(",") if name.strip()]
    unknown = [name for name in names if name not in BY_NAME]
    if unknown:
        fail(f"unknown event type(s): {', '.join(unknown)} (known: {', '.join(BY_NAME)})", code=2)
    return list(dict.fromkeys(names))


# --- listen -------------------------------------------------------------------------------


@dataclass
class Listener:
    """Shows each streamed event (after checking its signature) and forwards it."""

    secret: str
    forward_to: str | None
    http: aiohttp.ClientSession
    received: int = 0
    seen_ids: deque[str] = field(default_factory=lambda: deque(maxlen=1000))

    async def handle(self, data: dict[str, Any]) -> None:
        event_id = str(data.get("eventid", "?"))
        if event_id in self.seen_ids:
            return  # sent again after a reconnection: shown already
        self.seen_ids.append(event_id)
        self.received += 1
        body = str(data.get("body", "")).encode("utf-8")
        headers: dict[str, str] = dict(data.get("headers") or {})
        try:
            verify(body, headers, self.secret)
            check = "[green]signature=ok[/green]"
        except InvalidSignature as error:
            check = f"[red]signature=INVALID[/red] ({escape(str(error))})"
        now = datetime.now(UTC).strftime("%H:%M:%S")
        console.print(
            f"{now} [bold]{escape(str(data.get('event', '?')))}[/bold] "
            f"eventid={escape(event_id)} consumerid={escape(str(data.get('consumerid')))} "
            f"{check}"
        )
        try:
            pretty = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
        except ValueError:
            pretty = body.decode(errors="replace")
        console.print(escape(pretty))
        if self.forward_to:
            await self._forward(body, headers)

    async def _forward(self, body: bytes, headers: dict[str, str]) -> None:
        assert self.forward_to is not None
        outgoing = {key: value for key, value in headers.items() if key.lower() not in HOP_HEADERS}
        try:
            async with self.http.post(
                self.forward_to, data=body, headers=outgoing, allow_redirects=False
            ) as response:
                await response.read()
                colour = "green" if response.status < 300 else "red"
                console.print(
                    f"  -> forwarded to {escape(self.forward_to)}: "
                    f"[{colour}]{response.status}[/{colour}]"
                )
        except (aiohttp.ClientError, TimeoutError) as error:
            console.print(
                f"  -> [red]forwarding to {escape(self.forward_to)} failed:[/red] "
                f"{escape(type(error).__name__)} {escape(str(error))}"
            )


@dataclass(frozen=True)
class StreamMessage:
    """One server-sent event: its kind (``event:``), ``id:`` and parsed ``data:``."""

    kind: str
    id: str | None
    data: Any


async def read_messages(content: aiohttp.StreamReader) -> AsyncIterator[StreamMessage]:
    """Parse a ``text/event-stream`` body (comments are keep-alives and are skipped)."""
    kind, message_id, data = "message", None, list[str]()
    async for raw in content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield StreamMessage(kind, message_id, json.loads("\n".join(data)))
            kind, message_id, data = "message", None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            kind = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            message_id = value


class StreamEnded(Exception):
    """The server ended the stream; ``reason`` says why (see ``GET /stream/events``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


async def run_listen(
    *,
    base_url: str,
    creds: Credentials,
    events: list[str],
    forward_to: str | None,
    stop: asyncio.Event,
) -> int:
    """Stream the account's events until ``stop`` is set or the server ends the stream."""
    secret = new_signing_secret()
    timeout = aiohttp.ClientTimeout(total=30, connect=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        client = HooklineClient(http, base_url, creds)
        listener = Listener(secret, forward_to, http)
        task = asyncio.create_task(_stream(client, listener, events, secret))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            console.print(f"stopped after {listener.received} event(s)")
            return 0
        try:
            task.result()
        except StreamEnded as ended:  # a normal end (idle, or the server is stopping)
            console.print(f"the server ended the stream: {escape(str(ended))}")
            return 0
        except ApiError as error:
            error_console.print(f"[red]error:[/red] hookline refused: {escape(str(error))}")
            return 1
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            error_console.print(
                f"[red]error:[/red] lost the connection to {escape(base_url)}: "
                f"{escape(type(error).__name__)} {escape(str(error))}".rstrip()
            )
            return 1
        return 0


async def _stream(
    client: HooklineClient, listener: Listener, events: list[str], secret: str
) -> None:
    """Open the stream, and open it again after the last event seen when the token that
    opened it expires; returns never (raises how it ended)."""
    last_event_id: str | None = None
    announced = False
    while True:
        async with client.open_stream(events, secret, last_event_id) as response:
            async for message in read_messages(response.content):
                if message.kind == "ready" and not announced:
                    announced = True
                    scope = ", ".join(events) if events else "all event types"
                    console.print(
                        f"[bold green]Ready![/bold green] streaming the events of account "
                        f"{escape(str(message.data.get('accountid')))} from "
                        f"{escape(client.base_url)} ({escape(scope)}). Press Ctrl+C to stop."
                    )
                    console.print(f"Signing secret for this run: {secret}")
                    if listener.forward_to:
                        console.print(f"Forwarding to {escape(listener.forward_to)}")
                elif message.kind == "event":
                    last_event_id = message.id or last_event_id
                    await listener.handle(message.data)
                elif message.kind == "end":
                    reason = str(message.data.get("reason"))
                    if reason == "token_expired":
                        break  # sign in again and resume after the last event
                    raise StreamEnded(reason, str(message.data.get("message", reason)))
            else:
                raise aiohttp.ClientPayloadError("the server closed the stream")
        client.forget_token()


@contextlib.contextmanager
def _stop_on_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> Iterator[None]:
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        yield
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def listen(
    forward_to: Annotated[
        str | None,
        typer.Option(
            "--forward-to",
            help="Also POST each event here, with the body and signature headers of a real "
            "delivery (e.g. http://localhost:3000/hooks).",
        ),
    ] = None,
    events: Annotated[
        str | None, typer.Option("--events", help="Comma-separated event types (default: all).")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    key_file: KeyFileOption = None,
    account_id: AccountOption = None,
    client_id: ClientIdOption = None,
    client_secret: ClientSecretOption = None,
) -> None:
    """Stream this account's events from the server, check their signatures, print them."""
    chosen = choose_events(events)
    creds = Credentials.resolve(key_file, account_id, client_id, client_secret, url)

    async def main() -> int:
        stop = asyncio.Event()
        with _stop_on_signals(asyncio.get_running_loop(), stop):
            return await run_listen(
                base_url=url, creds=creds, events=chosen, forward_to=forward_to, stop=stop
            )

    code = asyncio.run(main())
    raise typer.Exit(code)


# --- trigger ------------------------------------------------------------------------------


def trigger_body(
    event: str, *, consumer_id: str | None, integration_id: int | None
) -> dict[str, Any]:
    """The ``POST /events`` body: the catalog example's fields for ``event``."""
    example = example_for(BY_NAME[event])
    body: dict[str, Any] = {"event": event, "consumerid": consumer_id or example["consumerid"]}
    body.update({name: example.get(name) for name in BY_NAME[event].field_names})
    if integration_id is not None:
        body["integrationid"] = integration_id
    return body


def trigger(
    event: Annotated[str, typer.Argument(help="Event type, e.g. account.connection.created.")],
    consumer: Annotated[
        str | None, typer.Option("--consumer", help="Consumer id to send (default: the example's).")
    ] = None,
    integration_id: Annotated[
        int | None,
        typer.Option(
            "--integration-id", help="Point of Sale integration (required for pos.* events)."
        ),
    ] = None,
    url: UrlOption = DEFAULT_URL,
    key_file: KeyFileOption = None,
    account_id: AccountOption = None,
    client_id: ClientIdOption = None,
    client_secret: ClientSecretOption = None,
) -> None:
    """Send the catalog's example of EVENT to this account (webhooks and `listen` streams)."""
    if event not in BY_NAME:
        fail(f"unknown event type: {event} (known: {', '.join(BY_NAME)})", code=2)
    if BY_NAME[event].api == "POS" and integration_id is None:
        fail(f"{event} needs --integration-id (a Point of Sale integration)", code=2)
    creds = Credentials.resolve(key_file, account_id, client_id, client_secret, url)
    body = trigger_body(event, consumer_id=consumer, integration_id=integration_id)

    async def main() -> Any:
        timeout = aiohttp.ClientTimeout(total=30, connect=10)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            return await HooklineClient(http, url, creds).send_event(body)

    try:
        result = asyncio.run(main())
    except ApiError as error:
        fail(f"hookline refused: {error}")
    except (aiohttp.ClientError, OSError) as error:
        fail(f"cannot reach {url}: {type(error).__name__} {error}".rstrip())
    deliveries = result.get("deliveries", 0) if isinstance(result, dict) else 0
    event_id = result.get("eventid", "?") if isinstance(result, dict) else "?"
    console.print(
        f"[green]triggered[/green] {escape(event)}: event {event_id}, "
        f"{deliveries} delivery(ies) queued"
    )
    if not deliveries:
        console.print(
            "no active webhook of this account matches this event "
            "(open `hookline listen` streams see it all the same)"
        )
    console.print(
        escape(json.dumps(result.get("body") if isinstance(result, dict) else result, indent=2))
    )


def register(app: typer.Typer) -> None:
    """Add the developer-tool commands to the main app."""
    app.command("listen")(listen)
    app.command("trigger")(trigger)
