"""The built-in HTTP runner: POST the execution context to the account's own service.

The answer is the result: 2xx with JSON ``{"status": "success"|"error", "message"?,
"error_code"?}`` ends the execution; ``202 Accepted`` leaves it running until the service
reports through the result endpoint; anything else (other statuses, bad JSON, network
errors, refused addresses, the deadline) ends it as error. Redirects are not followed, the
SSRF guard applies and, with the flow's signing secret, the request is signed exactly like a
webhook delivery (``X-Chift-Signature`` and Standard Webhooks headers).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from hookline import __version__
from hookline.delivery.emit import encode_body
from hookline.delivery.signing import SigningKey, delivery_headers
from hookline.delivery.ssrf import BlockedAddress, OutboundGuard, guarded_connector
from hookline.delivery.tls import outbound_ssl
from hookline.error_codes import ErrorCode
from hookline.errors import InvalidRequest
from hookline.platform.runners.types import SECRET_KEY, Finished, HandedOff, RunJob
from hookline.platform.statuses import ExecutionStatus

if TYPE_CHECKING:
    from hookline.runtime import Runtime

MAX_URL_LENGTH = 500
MAX_ANSWER_BYTES = 64 * 1024
MAX_MESSAGE_CHARS = 2000
MAX_ERROR_CODE_CHARS = 120


class HttpRunner:
    name = "http"
    resumable = True  # the request is this process's: another one sends it again if it dies

    def validate(self, execution: dict[str, Any]) -> None:
        url = execution.get("url")
        parts = urlsplit(url) if isinstance(url, str) and len(url) <= MAX_URL_LENGTH else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRequest(
                "The http runner needs execution.url: an http(s) URL of at "
                f"most {MAX_URL_LENGTH} characters",
                error_code=ErrorCode.INVALID_RUNNER,
            )

    async def run(self, runtime: Runtime, job: RunJob) -> Finished | HandedOff:
        """The service's answer; :class:`HandedOff` (202) when it reports later."""
        remaining = (job.deadline_at - runtime.clock.now()).total_seconds()
        if remaining <= 0:
            return _error(
                "The execution deadline passed before it started", ErrorCode.EXECUTION_TIMEOUT
            )
        settings = runtime.settings
        timeout = aiohttp.ClientTimeout(
            total=remaining, connect=min(settings.delivery_connect_timeout, remaining)
        )
        connector = guarded_connector(
            OutboundGuard(settings.outbound_allowlist), ssl=outbound_ssl(settings.outbound_ca_file)
        )
        body = encode_body(job.context())
        sealed = job.execution.get(SECRET_KEY)
        key = SigningKey.from_secret(runtime.secret_box.decrypt(sealed)) if sealed else None
        headers = delivery_headers(
            message_id=str(job.execution_id),
            body=body,
            key=key,
            timestamp=int(runtime.clock.now().timestamp()),
        )
        headers.update(
            {
                "User-Agent": f"hookline/{__version__}",
                "X-Hookline-Execution-Id": str(job.execution_id),
            }
        )
        try:
            async with (
                aiohttp.ClientSession(
                    connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()
                ) as session,
                session.post(
                    job.execution["url"], data=body, headers=headers, allow_redirects=False
                ) as response,
            ):
                body = await response.content.read(MAX_ANSWER_BYTES)
                return _outcome(response.status, body)
        except TimeoutError:
            return _error(f"No answer within {remaining:g} s", ErrorCode.EXECUTION_TIMEOUT)
        except BlockedAddress as error:
            return _error(str(error), ErrorCode.RUNNER_BLOCKED_ADDRESS)
        except (aiohttp.ClientError, OSError) as error:
            return _error(
                f"{type(error).__name__}: {error}"[:MAX_MESSAGE_CHARS], ErrorCode.RUNNER_NETWORK
            )


def _error(message: str, error_code: str) -> Finished:
    return Finished(ExecutionStatus.ERROR, message, error_code)


def _outcome(http_status: int, body: bytes) -> Finished | HandedOff:
    if http_status == 202:
        return HandedOff()
    if not 200 <= http_status < 300:
        return _error(f"Runner endpoint answered HTTP {http_status}", ErrorCode.RUNNER_HTTP_STATUS)
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or answer.get("status") not in (
        ExecutionStatus.SUCCESS,
        ExecutionStatus.ERROR,
    ):
        return _error(
            "Runner endpoint answered without a JSON {status: success|error}",
            ErrorCode.RUNNER_INVALID_ANSWER,
        )
    message = answer.get("message")
    error_code = answer.get("error_code")
    return Finished(
        ExecutionStatus(answer["status"]),
        str(message)[:MAX_MESSAGE_CHARS] if message is not None else None,
        str(error_code)[:MAX_ERROR_CODE_CHARS] if error_code is not None else None,
    )
