"""The dashboard under ``/ui``: server-rendered pages over the same use cases as the API.

Every page needs a signed-in session (see :mod:`hookline.ui.session`) and shows only the
session's account; every POST form carries the session's CSRF token, checked before anything
else happens.
"""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape

from hookline.catalog import BY_NAME, EVENT_TYPES, schema_for
from hookline.catalog import example_for as catalog_example
from hookline.delivery import logs as log_cases
from hookline.delivery import redeliver as redeliver_cases
from hookline.delivery import webhooks as webhook_cases
from hookline.delivery.circuits import circuits_of_urls
from hookline.delivery.health import webhook_health, webhooks_health
from hookline.delivery.probe import SentTest, send_test_event
from hookline.delivery.recovery import recovery_preview, send_retrying_now
from hookline.delivery.stats import attempts_over_time
from hookline.errors import HooklineError, InvalidRequest
from hookline.platform.accounts import check_api_key
from hookline.platform.connections import find_connection, list_connections
from hookline.platform.consumers import find_consumer, list_consumers
from hookline.platform.integrations import integration_ref, list_integrations
from hookline.platform.issues import (
    IssueFilter,
    count_open_issues,
    get_issue,
    issue_occurrences_of,
    list_issues,
)
from hookline.runtime import Runtime
from hookline.store.statuses import Outcome, WebhookStatus
from hookline.ui import revocations
from hookline.ui.chart import attempts_chart
from hookline.ui.session import (
    COOKIE_NAME,
    LOGIN_COOKIE_NAME,
    SESSION_TTL_SECONDS,
    Session,
    csrf_matches,
    csrf_token,
    decode_session,
    encode_session,
    new_session,
)

HERE = Path(__file__).parent
CONSUMERS_PER_PAGE = 200  # the page loads each shown consumer's connections
OVERVIEW_HEALTH_ROWS = 8

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["pretty_json"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False)
templates.filters["dt"] = lambda value: value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""
templates.filters["rate"] = lambda value: "—" if value is None else f"{value * 100:.0f} %"

NOTICES = {
    "created": "Webhook created.",
    "updated": "Webhook updated.",
    "deleted": "Webhook deleted.",
    "redelivered": "Redelivery queued: it will be sent in a moment.",
    "recovered": "Recovery queued: {count} failed delivery(ies) will be sent again.",
    "sentnow": "{count} retrying delivery(ies) will be sent now.",
    "resent": "Resend queued: it will be sent in a moment.",
    "signedout": "You are signed out.",
}


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime  # set by create_app; Starlette's state is Any
    return runtime


def _secret(request: Request) -> str:
    return _runtime(request).settings.jwt_key()


def _secure(request: Request) -> bool:
    """Mark cookies Secure when the dashboard is served over HTTPS (directly or by config)."""
    public = _runtime(request).settings.public_url or ""
    return request.url.scheme == "https" or public.startswith("https://")


async def current_session(request: Request) -> Session:
    """The signed-in session; otherwise (no cookie, a forged or expired one, or one signed
    out) a redirect to the sign-in page."""
    runtime = _runtime(request)
    session = decode_session(
        _secret(request), request.cookies.get(COOKIE_NAME), now=runtime.clock.now()
    )
    if session is not None:
        async with runtime.db.read() as conn:
            if not await revocations.is_live(conn, session):
                session = None
    if session is None:
        raise HTTPException(
            status_code=303, detail="Sign in first", headers={"Location": "/ui/login"}
        )
    return session


async def checked_form(request: Request, session: Session) -> dict[str, str]:
    """The POSTed form, after checking its CSRF token (403 when missing or wrong)."""
    form = await request.form()
    given = form.get("csrf")
    if not csrf_matches(
        csrf_token(_secret(request), session.session_id), given if isinstance(given, str) else None
    ):
        raise HTTPException(status_code=403, detail="Invalid or missing CSRF token")
    return {key: value for key, value in form.items() if isinstance(value, str)}


def render(
    request: Request,
    template: str,
    session: Session | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    notice = NOTICES.get(request.query_params.get("notice", ""))
    if notice and "{count}" in notice:
        count = request.query_params.get("count", "")
        notice = notice.format(count=int(count) if count.isdigit() else "the")
    html = templates.get_template(template).render(
        session=session,
        csrf=csrf_token(_secret(request), session.session_id) if session else "",
        notice=notice,
        path=request.url.path,
        **context,
    )
    return HTMLResponse(
        html,
        status_code=status_code,
        headers={
            "Cache-Control": "no-store",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "same-origin",
        },
    )


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


async def not_found_page(request: Request) -> HTMLResponse:
    """The styled 404: with the navigation when signed in, without it otherwise."""
    try:
        session: Session | None = await current_session(request)
    except HTTPException:
        session = None
    return render(request, "ui_404.html", session, status_code=404)


class PageRoute(APIRoute):
    """A dashboard route: a 404 (unknown or malformed id) is the styled page, not JSON."""

    def get_route_handler(self) -> Any:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTPException as error:
                if error.status_code != 404:
                    raise
                return await not_found_page(request)

        return handle


router = APIRouter(prefix="/ui", include_in_schema=False, route_class=PageRoute)


STATIC_TYPES = {".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


@router.get("/static/{name}")
async def static_file(name: str) -> Response:
    """The dashboard's few static files (a route, not a mount: routers cannot carry mounts)."""
    path = HERE / "static" / name
    kind = STATIC_TYPES.get(path.suffix)
    if kind is None or "/" in name or name.startswith(".") or not path.is_file():
        raise HTTPException(status_code=404, detail="Not Found")
    return Response(
        path.read_bytes(), media_type=kind, headers={"Cache-Control": "public, max-age=3600"}
    )


# --- sign in / out ------------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request) -> Response:
    token = secrets.token_urlsafe(18)
    response = render(request, "ui_login.html", login_csrf=token, error=None)
    _set_login_cookie(request, response, token)
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    values = {key: str(value).strip() for key, value in form.items()}
    cookie = request.cookies.get(LOGIN_COOKIE_NAME)
    if not cookie or not csrf_matches(cookie, values.get("csrf")):
        raise HTTPException(status_code=403, detail="Invalid or missing CSRF token")
    runtime = _runtime(request)
    valid = False
    try:
        account_id = uuid.UUID(values.get("accountId", ""))
    except ValueError:
        account_id = None
    client_id, client_secret = values.get("clientId", ""), values.get("clientSecret", "")
    if account_id and client_id and client_secret:
        async with runtime.db.read() as conn:
            valid = await check_api_key(
                conn, account_id=account_id, client_id=client_id, client_secret=client_secret
            )
    if not valid or account_id is None:
        token = secrets.token_urlsafe(18)
        response = render(
            request,
            "ui_login.html",
            status_code=401,
            login_csrf=token,
            error="Invalid credentials.",
            account_id=values.get("accountId", ""),
            client_id=client_id,
        )
        _set_login_cookie(request, response, token)
        return response
    session = new_session(account_id, client_id, now=runtime.clock.now())
    signed_in = redirect("/ui/")
    signed_in.set_cookie(
        COOKIE_NAME,
        encode_session(_secret(request), session),
        max_age=SESSION_TTL_SECONDS,
        path="/ui",
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    signed_in.delete_cookie(LOGIN_COOKIE_NAME, path="/ui")
    return signed_in


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = await current_session(request)
    await checked_form(request, session)
    runtime = _runtime(request)
    async with runtime.db.transaction() as conn:
        await revocations.revoke(conn, session, now=runtime.clock.now())
    response = redirect("/ui/login?notice=signedout")
    response.delete_cookie(COOKIE_NAME, path="/ui", httponly=True, samesite="lax")
    return response


def _set_login_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        LOGIN_COOKIE_NAME,
        token,
        max_age=3600,
        path="/ui",
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )


# --- overview and catalog -----------------------------------------------------------------


@router.get("")
async def root() -> Response:
    return redirect("/ui/")


@router.get("/")
async def overview(request: Request) -> Response:
    session = await current_session(request)
    runtime = _runtime(request)
    now = runtime.clock.now()
    async with runtime.db.read() as conn:
        buckets = await attempts_over_time(conn, session.account_id, now=now)
        health = await webhooks_health(conn, account_id=session.account_id, now=now)
        open_issues = await count_open_issues(conn, session.account_id)
    hooks = [item.webhook for item in health]
    totals = {
        Outcome.DELIVERED: sum(b.delivered for b in buckets),
        Outcome.RETRY: sum(b.retry for b in buckets),
        Outcome.FAILED: sum(b.failed for b in buckets),
    }
    return render(
        request,
        "ui_overview.html",
        session,
        chart=attempts_chart(buckets),
        totals=totals,
        webhook_count=len(hooks),
        inactive_count=sum(1 for hook in hooks if hook.status != WebhookStatus.ACTIVE),
        failing_count=sum(1 for item in health if item.state == "failing"),
        health=health[:OVERVIEW_HEALTH_ROWS],
        open_issues=open_issues,
    )


@router.get("/event-types")
async def catalog_page(request: Request) -> Response:
    session = await current_session(request)
    event_types = [
        {
            "name": t.name,
            "api": t.api,
            "description": t.description,
            "schema": schema_for(t),
            "example": catalog_example(t),
            "fields": t.fields,
        }
        for t in EVENT_TYPES
    ]
    return render(request, "ui_event_types.html", session, event_types=event_types)


# --- webhooks -----------------------------------------------------------------------------


def _parse_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise HTTPException(status_code=404, detail="Not Found") from None


def _failure(request: Request, session: Session, error: HooklineError) -> HTMLResponse:
    """A domain error as a page: the use case's own message, with its status code (an
    unknown id, or another account's, is the 404 page)."""
    return render(
        request,
        "ui_404.html" if error.status_code == 404 else "ui_error.html",
        session,
        status_code=error.status_code,
        error=error.message,
        detail=error.detail,
    )


async def _pos_integrations(conn: Any) -> list[Any]:
    return [i for i in await list_integrations(conn) if i.is_pos]


async def _webhooks_page(
    request: Request,
    session: Session,
    *,
    error: str | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    runtime = _runtime(request)
    async with runtime.db.read() as conn:
        found = await webhooks_health(conn, account_id=session.account_id, now=runtime.clock.now())
        pos = await _pos_integrations(conn)
    return render(
        request,
        "ui_webhooks.html",
        session,
        status_code=status_code,
        health=found,
        event_types=EVENT_TYPES,
        pos_integrations=pos,
        error=error,
        form=form or {},
    )


@router.get("/webhooks")
async def webhooks_page(request: Request) -> Response:
    session = await current_session(request)
    return await _webhooks_page(request, session)


@router.post("/webhooks")
async def webhook_create(request: Request) -> Response:
    session = await current_session(request)
    form = await checked_form(request, session)
    runtime = _runtime(request)
    event = form.get("event", "")
    raw_integration = form.get("integrationid", "").strip()
    try:
        integration_id = int(raw_integration) if raw_integration else None
    except ValueError:
        return await _webhooks_page(
            request, session, error="The integration must be a number.", form=form, status_code=400
        )
    if integration_id is not None and event in BY_NAME and BY_NAME[event].api != "POS":
        integration_id = None  # the form offers one integration field for every event type
    try:
        async with runtime.db.transaction() as conn:
            integration = await integration_ref(conn, integration_id)
            webhook = await webhook_cases.create_webhook(
                conn,
                runtime.secret_box,
                account_id=session.account_id,
                event=event,
                url=form.get("url", ""),
                signing_secret=form.get("signingsecret") or None,
                integration_id=integration_id,
                integration=integration,
                now=runtime.clock.now(),
            )
    except HooklineError as error:
        return await _webhooks_page(
            request, session, error=error.message, form=form, status_code=error.status_code
        )
    return redirect(f"/ui/webhooks/{webhook.id}?notice=created")


@router.get("/webhooks/{webhook_id}")
async def webhook_page(request: Request, webhook_id: str) -> Response:
    session = await current_session(request)
    return await _webhook_page(request, session, _parse_id(webhook_id))


async def _webhook_page(
    request: Request, session: Session, webhook_uuid: uuid.UUID, test: SentTest | None = None
) -> Response:
    runtime = _runtime(request)
    outcome = request.query_params.get("status") or None
    cursor = request.query_params.get("cursor") or None
    try:
        async with runtime.db.read() as conn:
            webhook = await webhook_cases.get_webhook(
                conn, account_id=session.account_id, webhook_id=webhook_uuid
            )
            page = await log_cases.list_logs(
                conn,
                account_id=session.account_id,
                webhook_id=webhook_uuid,
                limit=50,
                status=outcome,
                cursor=_parse_id(cursor) if cursor else None,
            )
            buckets = await attempts_over_time(
                conn, session.account_id, now=runtime.clock.now(), webhook_id=webhook_uuid
            )
            health = await webhook_health(conn, webhook, now=runtime.clock.now())
            circuits = await circuits_of_urls(conn, [webhook.url], runtime.clock.now())
    except HooklineError as error:
        return _failure(request, session, error)
    since_default = (runtime.clock.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    return render(
        request,
        "ui_webhook.html",
        session,
        webhook=webhook,
        logs=page.items,
        next_cursor=page.next_cursor,
        status_filter=outcome or "",
        chart=attempts_chart(buckets, title="Attempts of this webhook, last 24 hours"),
        since_default=since_default,
        test=test,
        health=health,
        circuit=circuits[webhook.url],
    )


@router.post("/webhooks/{webhook_id}/test")
async def webhook_test(request: Request, webhook_id: str) -> Response:
    """Send a test event now and show its attempt on the webhook's page."""
    session = await current_session(request)
    webhook_uuid = _parse_id(webhook_id)
    await checked_form(request, session)
    try:
        test = await send_test_event(
            _runtime(request), account_id=session.account_id, webhook_id=webhook_uuid
        )
    except HooklineError as error:
        return _failure(request, session, error)
    return await _webhook_page(request, session, webhook_uuid, test)


@router.post("/webhooks/{webhook_id}/edit")
async def webhook_edit(request: Request, webhook_id: str) -> Response:
    session = await current_session(request)
    webhook_uuid = _parse_id(webhook_id)
    form = await checked_form(request, session)
    runtime = _runtime(request)
    secret: str | None = None
    if form.get("remove_secret"):
        secret = ""
    elif form.get("signingsecret"):
        secret = form["signingsecret"]
    raw_filter = form.get("filter", "").strip()
    try:
        new_filter = json.loads(raw_filter) if raw_filter else {}
    except ValueError:
        return _failure(request, session, InvalidRequest("The filter is not valid JSON"))
    rate_limit: Any = webhook_cases.KEEP
    if "rate_limit_per_second" in form:
        raw_rate = form["rate_limit_per_second"].strip()
        try:
            rate_limit = float(raw_rate) if raw_rate else None
        except ValueError:
            return _failure(
                request, session, InvalidRequest("The rate limit must be a number (per second)")
            )
    try:
        async with runtime.db.transaction() as conn:
            await webhook_cases.update_webhook(
                conn,
                runtime.secret_box,
                account_id=session.account_id,
                webhook_id=webhook_uuid,
                status=form.get("status") or None,
                url=form.get("url") or None,
                signing_secret=secret,
                payload_filter=new_filter if "filter" in form else None,
                rate_limit_per_second=rate_limit,
                ordering=form.get("ordering") or None,
                now=runtime.clock.now(),
            )
    except HooklineError as error:
        return _failure(request, session, error)
    return redirect(f"/ui/webhooks/{webhook_uuid}?notice=updated")


@router.post("/webhooks/{webhook_id}/delete")
async def webhook_delete(request: Request, webhook_id: str) -> Response:
    session = await current_session(request)
    webhook_uuid = _parse_id(webhook_id)
    await checked_form(request, session)
    runtime = _runtime(request)
    try:
        async with runtime.db.transaction() as conn:
            await webhook_cases.delete_webhook(
                conn, account_id=session.account_id, webhook_id=webhook_uuid
            )
    except HooklineError as error:
        return _failure(request, session, error)
    return redirect("/ui/webhooks?notice=deleted")


@router.post("/webhooks/{webhook_id}/logs/{log_id}/redeliver")
async def log_redeliver(request: Request, webhook_id: str, log_id: str) -> Response:
    session = await current_session(request)
    webhook_uuid, log_uuid = _parse_id(webhook_id), _parse_id(log_id)
    await checked_form(request, session)
    runtime = _runtime(request)
    try:
        async with runtime.db.transaction() as conn:
            await redeliver_cases.redeliver_log(
                conn,
                account_id=session.account_id,
                webhook_id=webhook_uuid,
                log_id=log_uuid,
                now=runtime.clock.now(),
            )
    except HooklineError as error:
        return _failure(request, session, error)
    return redirect(f"/ui/webhooks/{webhook_uuid}?notice=redelivered")


def _since(value: str | None) -> datetime | None:
    """A ``datetime-local`` value (or any ISO time) as UTC; None when malformed."""
    try:
        moment = datetime.fromisoformat(value or "")
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@router.get("/webhooks/{webhook_id}/recover")
async def webhook_recover_preview(request: Request, webhook_id: str) -> Response:
    """What recover would do, before it runs: failed deliveries since the time (which it
    sends again) and retrying ones (which it leaves to their schedule, or sends now)."""
    session = await current_session(request)
    webhook_uuid = _parse_id(webhook_id)
    runtime = _runtime(request)
    since = _since(request.query_params.get("since"))
    if since is None:
        since = runtime.clock.now() - timedelta(days=1)
    try:
        async with runtime.db.read() as conn:
            webhook = await webhook_cases.get_webhook(
                conn, account_id=session.account_id, webhook_id=webhook_uuid
            )
            preview = await recovery_preview(
                conn, account_id=session.account_id, webhook_id=webhook_uuid, since=since
            )
    except HooklineError as error:
        return _failure(request, session, error)
    return render(
        request,
        "ui_recover.html",
        session,
        webhook=webhook,
        preview=preview,
        since_value=since.strftime("%Y-%m-%dT%H:%M"),
    )


@router.post("/webhooks/{webhook_id}/send-retrying")
async def webhook_send_retrying(request: Request, webhook_id: str) -> Response:
    session = await current_session(request)
    webhook_uuid = _parse_id(webhook_id)
    await checked_form(request, session)
    runtime = _runtime(request)
    try:
        async with runtime.db.transaction() as conn:
            count = await send_retrying_now(
                conn,
                account_id=session.account_id,
                webhook_id=webhook_uuid,
                now=runtime.clock.now(),
            )
    except HooklineError as error:
        return _failure(request, session, error)
    return redirect(f"/ui/webhooks/{webhook_uuid}?notice=sentnow&count={count}")


@router.post("/webhooks/{webhook_id}/recover")
async def webhook_recover(request: Request, webhook_id: str) -> Response:
    session = await current_session(request)
    webhook_uuid = _parse_id(webhook_id)
    form = await checked_form(request, session)
    runtime = _runtime(request)
    try:
        since = datetime.fromisoformat(form.get("since", "")).replace(tzinfo=UTC)
    except ValueError:
        return _failure(
            request,
            session,
            InvalidRequest("Give the time to recover from as YYYY-MM-DDTHH:MM (UTC)"),
        )
    try:
        async with runtime.db.transaction() as conn:
            count = await redeliver_cases.recover_failed(
                conn,
                account_id=session.account_id,
                webhook_id=webhook_uuid,
                since=since,
                now=runtime.clock.now(),
            )
    except HooklineError as error:
        return _failure(request, session, error)
    return redirect(f"/ui/webhooks/{webhook_uuid}?notice=recovered&count={count}")


# --- consumers, connections and issues ----------------------------------------------------


@router.get("/consumers")
async def consumers_page(request: Request) -> Response:
    session = await current_session(request)
    search = (request.query_params.get("q") or "").strip()[:200]
    async with _runtime(request).db.read() as conn:
        found = await list_consumers(conn, session.account_id, search=search or None)
        rows = [
            (consumer, await list_connections(conn, session.account_id, consumer.id))
            for consumer in found[:CONSUMERS_PER_PAGE]
        ]
    return render(
        request,
        "ui_consumers.html",
        session,
        rows=rows,
        search=search,
        total=len(found),
        shown=len(rows),
    )


@router.get("/issues")
async def issues_page(request: Request) -> Response:
    session = await current_session(request)
    status = "closed" if request.query_params.get("status") == "closed" else "open"
    async with _runtime(request).db.read() as conn:
        found = await list_issues(conn, session.account_id, IssueFilter(status=status))
        names = {
            consumer.id: consumer.name
            for consumer in await list_consumers(conn, session.account_id)
        }
    return render(
        request, "ui_issues.html", session, issues=found, consumer_names=names, status=status
    )


@router.get("/issues/{issue_id}")
async def issue_page(request: Request, issue_id: str) -> Response:
    session = await current_session(request)
    issue_uuid = _parse_id(issue_id)
    try:
        async with _runtime(request).db.read() as conn:
            issue = await get_issue(conn, session.account_id, issue_uuid)
            occurrences = await issue_occurrences_of(conn, issue.id)
            consumer = await find_consumer(conn, session.account_id, issue.consumer_id)
            connection = await find_connection(conn, session.account_id, issue.connection_id)
    except HooklineError as error:
        return _failure(request, session, error)
    return render(
        request,
        "ui_issue.html",
        session,
        issue=issue,
        occurrences=occurrences,
        consumer=consumer,
        connection=connection,
    )
