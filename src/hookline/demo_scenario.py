"""The scenario behind ``hookline demo``: a whole hub's day in under a minute.

From an empty database it creates an account, a consumer with three connections (accounting,
POS, and a POS with a local agent), a sync with two flows, and one signed webhook per event
type pointing at a loopback receiver that verifies every signature. Then it drives real
activity through the platform's use cases (never by emitting events itself), so all 13 event
types are emitted by the state changes that cause them and delivered by the real delivery
worker. The CLI prints each delivery; the tests assert that all arrived, correctly signed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from aiohttp import web

from hookline.catalog import EVENT_TYPES
from hookline.error_codes import ErrorCode
from hookline.runtime import Runtime
from hookline.verify import InvalidSignature, verify_chift, verify_standard

ALL_EVENTS: tuple[str, ...] = tuple(event_type.name for event_type in EVENT_TYPES)
ACCOUNTING_INTEGRATION = 1001
POS_INTEGRATION = 2001
AGENT_INTEGRATION = 2003
TRIAL_INTEGRATION = 1002
AGENT_DOWN_AFTER_SECONDS = 1.0  # the demo's watchdog threshold (15 minutes in production)


@dataclass(frozen=True)
class DemoDelivery:
    event: str
    body: dict[str, Any]
    chift_signature_ok: bool
    standard_signature_ok: bool
    webhook_id: str
    received_at: float

    @property
    def verified(self) -> bool:
        return self.chift_signature_ok and self.standard_signature_ok


@dataclass
class DemoResult:
    account_id: uuid.UUID
    consumer_id: uuid.UUID
    deliveries: list[DemoDelivery] = field(default_factory=list)

    @property
    def delivered_types(self) -> set[str]:
        return {item.event for item in self.deliveries if item.verified}

    @property
    def missing(self) -> list[str]:
        return [name for name in ALL_EVENTS if name not in self.delivered_types]


Step = Callable[[str], None]
OnDelivery = Callable[[DemoDelivery], None]


class DemoReceiver:
    """An aiohttp endpoint on loopback that checks both signatures of every request."""

    def __init__(self, secret: str, on_delivery: OnDelivery | None = None) -> None:
        self.secret = secret
        self.on_delivery = on_delivery
        self.deliveries: list[DemoDelivery] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> DemoReceiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        headers = dict(request.headers)
        chift_ok = standard_ok = True
        try:
            verify_chift(raw, headers, self.secret)
        except InvalidSignature:
            chift_ok = False
        try:
            verify_standard(raw, headers, self.secret)
        except InvalidSignature:
            standard_ok = False
        body = json.loads(raw)
        delivery = DemoDelivery(
            str(body.get("event")),
            body,
            chift_ok,
            standard_ok,
            headers.get("webhook-id", ""),
            time.monotonic(),
        )
        async with self._changed:
            self.deliveries.append(delivery)
            self._changed.notify_all()
        if self.on_delivery:
            self.on_delivery(delivery)
        return web.Response(status=200 if delivery.verified else 400, text="ok")

    async def wait_for_all(self, events: tuple[str, ...], timeout: float) -> None:
        wanted = set(events)

        def done() -> bool:
            return wanted <= {item.event for item in self.deliveries if item.verified}

        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait_for(done), timeout)


async def run_demo(
    runtime: Runtime,
    *,
    on_step: Step | None = None,
    on_delivery: OnDelivery | None = None,
    timeout: float = 60.0,
    run_worker: bool = True,
    pace: float = 0.0,
) -> DemoResult:
    """Run the whole story on ``runtime`` (migrated already) and wait for its deliveries.

    ``run_worker=False`` when the process already runs delivery workers (e.g. beside a
    server). ``pace`` pauses after each step so a watcher sees deliveries follow their cause.
    Returns what the receiver got; ``result.missing`` lists undelivered types.
    """
    from hookline.delivery.worker import run_delivery_worker

    say = on_step or (lambda _text: None)

    async def step(text: str) -> None:
        if pace:
            await asyncio.sleep(pace)  # only for a human watching the output
        say(text)

    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    receiver = await DemoReceiver(secret, on_delivery).start()
    stop = asyncio.Event()
    worker = (
        asyncio.create_task(run_delivery_worker(runtime, stop), name="demo-worker")
        if run_worker
        else None
    )
    try:
        result = await _story(runtime, receiver, secret, step)
        await step("waiting for the deliveries")
        await receiver.wait_for_all(ALL_EVENTS, timeout)
        result.deliveries = list(receiver.deliveries)
        return result
    finally:
        stop.set()
        if worker is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(worker, 15)
        await receiver.stop()


async def _story(
    runtime: Runtime, receiver: DemoReceiver, secret: str, step: Callable[[str], Awaitable[None]]
) -> DemoResult:
    from hookline.delivery.webhooks import IntegrationRef, create_webhook
    from hookline.platform import agents, connections, consumers, executions, issues, syncs
    from hookline.platform.accounts import create_account
    from hookline.platform.connectors import poll_with
    from hookline.platform.connectors.simulated import SimulatedPos
    from hookline.platform.statuses import ConnectionStatus, ExecutionStatus, IssueLevel

    db, box = runtime.db, runtime.secret_box

    async def tx(work: Callable[[Any], Awaitable[Any]]) -> Any:
        async with db.transaction() as conn:
            return await work(conn)

    def now() -> Any:
        return runtime.clock.now()

    await step("creating an account and a consumer")
    key = await tx(lambda c: create_account(c, "hookline demo", now=now()))
    account = key.account_id
    consumer = await tx(
        lambda c: consumers.create_consumer(
            c, account, name="Brasserie du Parc", email="owner@brasserie.example", now=now()
        )
    )

    await step("subscribing a signed webhook to each of the 13 event types")
    for name in ALL_EVENTS:
        pos = name.startswith("pos.")
        await tx(
            partial(
                create_webhook,
                box=box,
                account_id=account,
                event=name,
                url=f"{receiver.url}/{name}",
                signing_secret=secret,
                now=now(),
                integration_id=POS_INTEGRATION if pos else None,
                integration=IntegrationRef(POS_INTEGRATION, True) if pos else None,
            )
        )

    await step("connecting accounting, a POS and a POS with a local agent")
    accounting = await tx(
        lambda c: connections.create_connection(
            c,
            box,
            account_id=account,
            consumer_id=consumer.id,
            integration_id=ACCOUNTING_INTEGRATION,
            name="Odoo",
            now=now(),
            credentials={
                "url": "https://odoo.example",
                "database": "parc",
                "username": "demo",
                "api_key": "odoo-demo-key",
            },
        )
    )
    pos = await tx(
        lambda c: connections.create_connection(
            c,
            box,
            account_id=account,
            consumer_id=consumer.id,
            integration_id=POS_INTEGRATION,
            name="Lightspeed",
            now=now(),
            credentials={"business_location_id": "loc-grand-place", "api_token": "ls-demo-token"},
        )
    )
    agent = await tx(
        lambda c: connections.create_connection(
            c,
            box,
            account_id=account,
            consumer_id=consumer.id,
            integration_id=AGENT_INTEGRATION,
            name="Back-office till",
            now=now(),
            credentials={"store_code": "PARC-01"},
        )
    )

    await step("the local agent pings for the first time")
    await tx(lambda c: agents.agent_heartbeat(c, agent.agent_token, now=now()))

    await step("the accounting credentials expire, then are renewed")
    for status in (ConnectionStatus.INACTIVE, ConnectionStatus.ACTIVE):
        await tx(
            partial(
                connections.set_connection_status,
                account_id=account,
                connection_id=accounting.connection.id,
                status=status,
                now=now(),
                error_code=ErrorCode.AUTH if status == ConnectionStatus.INACTIVE else None,
                message="Invalid credentials" if status == ConnectionStatus.INACTIVE else None,
            )
        )

    await step("creating a sync with two flows and enabling them")
    external = {"type": "code", "runner": "external"}
    sync = await tx(
        lambda c: syncs.create_sync(
            c,
            account,
            name="Sales to accounting",
            definition={},
            now=now(),
            flow_items=[
                {
                    "name": "Daily sales",
                    "execution": external,
                    "triggers": [{"id": "trigger-1", "type": "event"}],
                },
                {
                    "name": "Invoices",
                    "execution": external,
                    "triggers": [{"id": "trigger-1", "type": "event"}],
                },
            ],
        )
    )
    for flow in sync.flows:
        await tx(
            partial(
                syncs.enable_flow,
                account_id=account,
                consumer_id=consumer.id,
                sync_id=sync.id,
                flow_id=flow.id,
                trigger_id=None,
                trigger_explicit=False,
                cronschedule=None,
                data=None,
                integrationids=[],
                now=now(),
            )
        )
    daily = sync.flows[0]

    await step("running 'Daily sales': error, error again, then success")
    for outcome in (ExecutionStatus.ERROR, ExecutionStatus.ERROR, ExecutionStatus.SUCCESS):
        triggered = await tx(
            lambda c: executions.trigger_flow(
                c,
                account_id=account,
                sync_id=sync.id,
                flow_id=daily.id,
                consumer_ids=[consumer.id],
                data=None,
                trigger="event",
                now=now(),
                timeout_seconds=runtime.settings.execution_timeout_seconds,
                run_lease_seconds=runtime.settings.run_lease_seconds,
            )
        )
        for job in triggered.jobs:
            await tx(
                partial(
                    executions.finish_execution,
                    execution_id=job.execution_id,
                    status=outcome,
                    now=now(),
                    error_code=ErrorCode.ACCOUNTING_API
                    if outcome == ExecutionStatus.ERROR
                    else None,
                    message="The accounting API answered 503"
                    if outcome == ExecutionStatus.ERROR
                    else None,
                )
            )

    await step("the POS connector reports a menu mapping problem twice, then it clears")
    for _ in range(2):
        await tx(
            lambda c: issues.report_issue(
                c,
                account_id=account,
                consumer_id=consumer.id,
                connection_id=pos.connection.id,
                error_code=ErrorCode.UNMAPPED_PRODUCT,
                level=IssueLevel.WARNING,
                message="Product p-steak has no accounting category",
                now=now(),
                context={"product_id": "p-steak"},
            )
        )
    await tx(
        lambda c: issues.close_issues(
            c,
            consumer_id=consumer.id,
            connection_id=pos.connection.id,
            error_code=ErrorCode.UNMAPPED_PRODUCT,
            now=now(),
        )
    )

    await step("polling the simulated POS: new orders, then completed ones")
    till = SimulatedPos(seed=2026, new_per_poll=(2, 2), close_probability=1.0)
    for _ in range(2):
        await poll_with(runtime, till, pos.connection.id)

    await step("the local agent goes silent, then comes back")
    await asyncio.sleep(AGENT_DOWN_AFTER_SECONDS + 0.1)  # real silence, as the watchdog sees it
    await tx(
        lambda c: agents.mark_down_stale_agents(
            c, now(), down_after_seconds=AGENT_DOWN_AFTER_SECONDS, account_id=account
        )
    )
    await tx(lambda c: agents.agent_heartbeat(c, agent.agent_token, now=now()))

    await step("trying Exact Online, then removing it")
    trial = await tx(
        lambda c: connections.create_connection(
            c,
            box,
            account_id=account,
            consumer_id=consumer.id,
            integration_id=TRIAL_INTEGRATION,
            name="Exact trial",
            now=now(),
            credentials={"client_id": "exact-demo", "client_secret": "exact-demo-secret"},
        )
    )
    await tx(
        lambda c: connections.delete_connection(
            c,
            account_id=account,
            consumer_id=consumer.id,
            connection_id=trial.connection.id,
            now=now(),
        )
    )

    await step("disabling the 'Invoices' flow")
    await tx(
        lambda c: syncs.disable_flow(c, account, consumer.id, sync.id, sync.flows[1].id, now=now())
    )
    return DemoResult(account_id=account, consumer_id=consumer.id)
