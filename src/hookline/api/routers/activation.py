"""The activation page a consumer opens from a connection link: pick the software, enter its
credentials, submit. The unguessable token in the URL is the only capability (no cookies,
so there is no ambient authority for a cross-site request to borrow); it is single-use and
expires after ``activation_ttl_seconds``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from hookline.api.deps import RuntimeDep
from hookline.errors import HooklineError, InvalidRequest
from hookline.platform.connections import (
    ActivationLink,
    complete_activation,
    find_connection,
    open_activation_link,
    usable_integration,
)
from hookline.platform.consumers import get_consumer
from hookline.platform.integrations import Integration, find_integration, list_integrations
from hookline.platform.statuses import IntegrationStatus
from hookline.runtime import Runtime

router = APIRouter(include_in_schema=False)

ACTIVATION_PREFIX = "/activation"
CREDENTIAL_PREFIX = "credential."
_templates = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parents[2] / "ui" / "templates"),
    autoescape=select_autoescape(["html"]),
)
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the token must not leak to linked sites
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}


def public_base(runtime: Runtime, request: Request) -> str:
    """The externally visible base URL: ``public_url`` if set, else the request's."""
    return (runtime.settings.public_url or str(request.base_url)).rstrip("/")


def activation_url(base: str, token: str) -> str:
    return f"{base}{ACTIVATION_PREFIX}/{token}"


def _page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _templates.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def _error_page(error: HooklineError) -> HTMLResponse:
    return _page("activation_error.html", error.status_code, message=error.message)


async def _form_page(
    runtime: Runtime,
    token: str,
    *,
    chosen: int | None,
    status: int = 200,
    error: str | None = None,
    name: str | None = None,
    values: dict[str, str] | None = None,
) -> HTMLResponse:
    async with runtime.db.read() as conn:
        try:
            link = await open_activation_link(conn, token, now=runtime.clock.now())
            consumer = await get_consumer(conn, link.account_id, link.consumer_id)
        except HooklineError as failure:
            return _error_page(failure)
        integration = await _integration_for(conn, link, chosen)
        if isinstance(integration, str):
            error, integration = error or integration, None
        choices = (
            [] if integration else await list_integrations(conn, status=IntegrationStatus.ACTIVE)
        )
    fields = [
        item
        for item in (integration.credentials if integration else ())
        if item.visibility in ("consumer", "both")
    ]
    return _page(
        "activation.html",
        status,
        consumer=consumer,
        integration=integration,
        choices=choices,
        fields=fields,
        error=error,
        name=name or link.name,
        values=values or {},
        expires_at=link.expires_at,
        updating=link.connection_id is not None,
    )


async def _integration_for(
    conn: Any, link: ActivationLink, chosen: int | None
) -> Integration | str | None:
    """The link's integration, else the one picked on the page (an error text if bad)."""
    if link.integration_id is not None:
        return await find_integration(conn, link.integration_id)
    if chosen is None:
        return None
    try:
        return await usable_integration(conn, chosen)
    except InvalidRequest as error:
        return error.message


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


@router.get(ACTIVATION_PREFIX + "/{token}", response_class=HTMLResponse)
async def activation_page(token: str, request: Request, runtime: RuntimeDep) -> HTMLResponse:
    chosen = _int_or_none(request.query_params.get("integrationid"))
    return await _form_page(runtime, token, chosen=chosen)


@router.post(ACTIVATION_PREFIX + "/{token}", response_class=HTMLResponse)
async def submit_activation(token: str, request: Request, runtime: RuntimeDep) -> HTMLResponse:
    form = await request.form()
    chosen = _int_or_none(form.get("integrationid"))
    name = str(form.get("name") or "").strip() or None
    credentials = {
        key.removeprefix(CREDENTIAL_PREFIX): str(value)
        for key, value in form.multi_items()
        if key.startswith(CREDENTIAL_PREFIX)
    }
    now = runtime.clock.now()
    try:
        async with runtime.db.read() as conn:
            link = await open_activation_link(conn, token, now=now)
        if link.connection_id is not None:  # blank fields keep the stored values
            credentials = {key: value for key, value in credentials.items() if value.strip()}
        async with runtime.db.transaction() as conn:
            created = await complete_activation(
                conn,
                runtime.secret_box,
                token=token,
                now=now,
                integration_id=chosen,
                name=name,
                credentials=credentials,
            )
            consumer = await get_consumer(conn, link.account_id, link.consumer_id)
            connection = await find_connection(conn, link.account_id, created.connection.id)
    except InvalidRequest as error:
        message = error.message + (f" ({error.detail})" if error.detail else "")
        return await _form_page(
            runtime, token, chosen=chosen, status=400, error=message, name=name, values=credentials
        )
    except HooklineError as error:
        return _error_page(error)
    return _page(
        "activation_done.html",
        connection=connection,
        agent_token=created.agent_token,
        redirect_url=consumer.redirect_url,
        updating=link.connection_id is not None,
    )
