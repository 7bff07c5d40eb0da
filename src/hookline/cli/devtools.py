"""``hookline listen`` and ``hookline trigger``: see and provoke real deliveries while developing.

Both talk to a running hookline over its public HTTP API (with aiohttp), exactly like any
client, so they work against a local server as well as a remote one. ``listen`` registers
temporary webhooks with a random secret, checks both signatures of every delivery with
:mod:`hookline.verify`, prints it, optionally forwards it, and removes its webhooks on exit.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import aiohttp
import typer
from aiohttp import web
from rich.console import Console
from rich.markup import escape

from hookline.catalog import BY_NAME, EVENT_TYPES, example_for
from hookline.verify import InvalidSignature, verify

console = Console(highlight=False, soft_wrap=True)

UrlOption = Annotated[
    str, typer.Option("--url", envvar="HOOKLINE_URL", help="Base URL of the hookline server.")
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


class ApiError(Exception):
    """A hookline API call failed; the message is the server's own explanation."""


@dataclass
class Credentials:
    account_id: str
    client_id: str
    client_secret: str

    @classmethod
    def from_options(
        cls, account_id: str | None, client_id: str | None, client_secret: str | None
    ) -> Credentials:
        missing = [
            name
            for name, value in (
                ("HOOKLINE_ACCOUNT_ID / --account-id", account_id),
                ("HOOKLINE_CLIENT_ID / --client-id", client_id),
                ("HOOKLINE_CLIENT_SECRET / --client-secret", client_secret),
            )
            if not value
        ]
        if missing:
            console.print(f"[red]missing credentials:[/red] {', '.join(missing)}")
            raise typer.Exit(2)
        return cls(str(account_id), str(client_id), str(client_secret))


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
        data = await self._call("POST", "/token", json=body, auth=False)
        self._token = data["access_token"]
        return self._token

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
                self._token = None  # expired during a long listen: sign in again, once
                return await self._call(method, path, retried=True, **kwargs)
            text = await response.text()
            if response.status >= 400:
                raise ApiError(_error_message(response.status, text))
            return json.loads(text) if text else None

    async def event_types(self) -> list[dict[str, Any]]:
        return await self._call("GET", "/webhooks/list")

    async def create_webhook(
        self, event: str, url: str, secret: str, integration_id: int | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"event": event, "url": url, "signingsecret": secret}
        if integration_id is not None:
            body["integrationid"] = integration_id
        return await self._call("POST", "/webhooks", json=body)

    async def delete_webhook(self, webhook_id: str) -> None:
        await self._call("DELETE", f"/webhooks/{webhook_id}")

    async def webhooks(self) -> list[dict[str, Any]]:
        return await self._call("GET", "/webhooks")

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


def choose_events(requested: str | None, integration_id: int | None) -> list[str]:
    """The event types to listen to: the requested ones (checked), or every type.

    POS event types need an integration id; without one they are left out of "every type"
    (with a note) and refused when asked for by name.
    """
    if requested:
        names = [name.strip() for name in requested.split(",") if name.strip()]
        unknown = [name for name in names if name not in BY_NAME]
        if unknown:
            console.print(f"[red]unknown event type(s):[/red] {', '.join(unknown)}")
            raise typer.Exit(2)
        pos = [name for name in names if BY_NAME[name].api == "POS"]
        if pos and integration_id is None:
            console.print(
                f"[red]{', '.join(pos)} need(s) --integration-id[/red] "
                "(the id of a Point of Sale integration)"
            )
            raise typer.Exit(2)
        return list(dict.fromkeys(names))
    names = [t.name for t in EVENT_TYPES if t.api != "POS" or integration_id is not None]
    if integration_id is None:
        console.print(
            "[yellow]note:[/yellow] pos.* events skipped; pass --integration-id "
            "to listen to them too"
        )
    return names


# --- listen -------------------------------------------------------------------------------


@dataclass
class Listener:
    """The local receiving end: verifies, prints and forwards each delivery."""

    secret: str
    forward_to: str | None
    http: aiohttp.ClientSession
    received: int = 0
    seen_ids: set[str] = field(default_factory=set)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        now = datetime.now(UTC).strftime("%H:%M:%S")
        msg_id = request.headers.get("webhook-id", "?")
        try:
            verify(body, request.headers, self.secret)
        except InvalidSignature as error:
            console.print(
                f"{now} [red]REJECTED[/red] webhook-id={escape(msg_id)}: {escape(str(error))}"
            )
            return web.Response(status=400, text=f"invalid signature: {error}")
        self.received += 1
        try:
            payload: Any = json.loads(body)
            event = payload.get("event", "?") if isinstance(payload, dict) else "?"
            pretty = json.dumps(payload, indent=2, ensure_ascii=False)
        except ValueError:
            event, pretty = "?", body.decode(errors="replace")
        again = " (redelivery)" if msg_id in self.seen_ids else ""
        self.seen_ids.add(msg_id)
        console.print(
            f"{now} [green]verified[/green] [bold]{escape(event)}[/bold] "
            f"webhook-id={escape(msg_id)}{again}"
        )
        console.print(escape(pretty))
        if self.forward_to:
            await self._forward(body, headers)
        return web.Response(status=200, text="ok")

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


async def run_listen(
    *,
    base_url: str,
    creds: Credentials,
    events: list[str],
    host: str,
    port: int,
    public_url: str | None,
    forward_to: str | None,
    integration_id: int | None,
    stop: asyncio.Event,
) -> int:
    """Register, receive until ``stop`` is set, then always remove what was registered."""
    secret = new_signing_secret()
    timeout = aiohttp.ClientTimeout(total=30, connect=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        client = HooklineClient(http, base_url, creds)
        listener = Listener(secret, forward_to, http)
        app = web.Application(client_max_size=16 * 1024 * 1024)
        path = f"/hookline-listen/{secrets.token_hex(6)}"
        app.router.add_post(path, listener.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        created: list[str] = []
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            target = (public_url.rstrip("/") if public_url else f"http://{host}:{bound}") + path
            for event in events:
                integration = integration_id if BY_NAME[event].api == "POS" else None
                webhook = await client.create_webhook(event, target, secret, integration)
                created.append(webhook["webhookid"])
            console.print(
                f"[bold green]Ready![/bold green] listening on {escape(target)} for "
                f"{len(created)} event type(s)"
                + (f", forwarding to {escape(forward_to)}" if forward_to else "")
                + ". Press Ctrl+C to stop."
            )
            await stop.wait()
            return 0
        except ApiError as error:
            console.print(f"[red]hookline refused:[/red] {escape(str(error))}")
            return 1
        except (aiohttp.ClientError, OSError) as error:
            console.print(
                f"[red]cannot reach {escape(base_url)}:[/red] "
                f"{escape(type(error).__name__)} {escape(str(error))}"
            )
            return 1
        finally:
            await _remove(client, created)
            await runner.cleanup()


async def _remove(client: HooklineClient, webhook_ids: list[str]) -> None:
    """Delete the temporary webhooks, reporting (not raising) the ones that could not go."""
    removed = 0
    for webhook_id in webhook_ids:
        try:
            await client.delete_webhook(webhook_id)
            removed += 1
        except (ApiError, aiohttp.ClientError, OSError) as error:
            console.print(f"[red]could not remove webhook {webhook_id}:[/red] {escape(str(error))}")
    if webhook_ids:
        console.print(f"removed {removed} of {len(webhook_ids)} temporary webhook(s)")


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
            "--forward-to", help="Also POST each verified delivery (same body and headers) here."
        ),
    ] = None,
    events: Annotated[
        str | None, typer.Option("--events", help="Comma-separated event types (default: all).")
    ] = None,
    port: Annotated[int, typer.Option("--port", help="Local port to receive on (0: any).")] = 0,
    host: Annotated[str, typer.Option("--host", help="Local address to receive on.")] = "127.0.0.1",
    public_url: Annotated[
        str | None,
        typer.Option(
            "--public-url",
            help="URL at which hookline reaches this listener, if not http://HOST:PORT "
            "(e.g. a tunnel).",
        ),
    ] = None,
    integration_id: Annotated[
        int | None,
        typer.Option("--integration-id", help="Point of Sale integration for pos.* events."),
    ] = None,
    url: UrlOption = DEFAULT_URL,
    account_id: AccountOption = None,
    client_id: ClientIdOption = None,
    client_secret: ClientSecretOption = None,
) -> None:
    """Receive this account's events locally: temporary webhooks, verified and printed."""
    creds = Credentials.from_options(account_id, client_id, client_secret)
    chosen = choose_events(events, integration_id)

    async def main() -> int:
        stop = asyncio.Event()
        with _stop_on_signals(asyncio.get_running_loop(), stop):
            return await run_listen(
                base_url=url,
                creds=creds,
                events=chosen,
                host=host,
                port=port,
                public_url=public_url,
                forward_to=forward_to,
                integration_id=integration_id,
                stop=stop,
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
    account_id: AccountOption = None,
    client_id: ClientIdOption = None,
    client_secret: ClientSecretOption = None,
) -> None:
    """Send the catalog's example of EVENT to this account's matching webhooks."""
    if event not in BY_NAME:
        console.print(
            f"[red]unknown event type:[/red] {escape(event)} (known: {', '.join(BY_NAME)})"
        )
        raise typer.Exit(2)
    if BY_NAME[event].api == "POS" and integration_id is None:
        console.print(f"[red]{event} needs --integration-id[/red] (a Point of Sale integration)")
        raise typer.Exit(2)
    creds = Credentials.from_options(account_id, client_id, client_secret)
    body = trigger_body(event, consumer_id=consumer, integration_id=integration_id)

    async def main() -> Any:
        timeout = aiohttp.ClientTimeout(total=30, connect=10)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            return await HooklineClient(http, url, creds).send_event(body)

    try:
        result = asyncio.run(main())
    except ApiError as error:
        console.print(f"[red]hookline refused:[/red] {escape(str(error))}")
        raise typer.Exit(1) from None
    except (aiohttp.ClientError, OSError) as error:
        console.print(f"[red]cannot reach {escape(url)}:[/red] {escape(str(error))}")
        raise typer.Exit(1) from None
    deliveries = result.get("deliveries", 0) if isinstance(result, dict) else 0
    event_id = result.get("eventid", "?") if isinstance(result, dict) else "?"
    console.print(
        f"[green]triggered[/green] {escape(event)}: event {event_id}, "
        f"{deliveries} delivery(ies) queued"
    )
    if not deliveries:
        console.print("[yellow]no active webhook of this account matches this event[/yellow]")
    console.print(
        escape(json.dumps(result.get("body") if isinstance(result, dict) else result, indent=2))
    )


def register(app: typer.Typer) -> None:
    """Add the developer-tool commands to the main app."""
    app.command("listen")(listen)
    app.command("trigger")(trigger)
