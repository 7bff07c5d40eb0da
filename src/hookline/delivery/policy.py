"""What to do after an attempt: pure functions, so the rules are testable without HTTP or a DB.

Rules: 2xx delivered; network errors, timeouts, 429 and 5xx are retried on the schedule (with
jitter; ``Retry-After`` honoured up to a bound); 410 Gone disables the webhook; other statuses
(4xx, and 1xx/3xx since redirects are not followed) fail without retry; a refused (blocked)
destination fails without retry. A webhook failing for longer than the configured period is
disabled.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum

from hookline.store.statuses import Outcome


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"  # retryable failure (may still be final if the schedule is exhausted)
    FAIL = "fail"  # permanent failure
    GONE = "gone"  # 410: fail and disable the webhook


@dataclass(frozen=True)
class Decision:
    outcome: Outcome  # delivered | retry | failed | disabled
    next_attempt_at: datetime | None = None
    disable_reason: str | None = None


def classify(status: int | None, *, retryable_error: bool = True) -> Verdict:
    """The verdict for an HTTP status, or for no response at all (``status`` None)."""
    if status is None:
        return Verdict.RETRY if retryable_error else Verdict.FAIL
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status == 410:
        return Verdict.GONE
    if status == 429 or status >= 500:
        return Verdict.RETRY
    return Verdict.FAIL


def retry_delay(
    schedule: Sequence[float], attempt: int, *, jitter: float, rng: random.Random | None = None
) -> float | None:
    """Seconds before the attempt after ``attempt`` (1-based), or None when none is left.

    ``schedule[i]`` is the delay before attempt ``i + 1``; the first entry is the delay of the
    first attempt (0 = immediately). Jitter spreads retries by ±``jitter`` of the delay so a
    receiver coming back up is not hit by every queued delivery in the same second.
    """
    if attempt >= len(schedule):
        return None
    delay = max(0.0, float(schedule[attempt]))
    if jitter > 0 and delay > 0:
        delay *= 1.0 + (rng or random).uniform(-jitter, jitter)
    return max(0.0, delay)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` as seconds from ``now`` (delta-seconds or an HTTP date), None if invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None or moment.tzinfo is None:
        return None
    return max(0.0, (moment - now).total_seconds())


def should_disable(
    failing_since: datetime | None, now: datetime, disable_after_seconds: float
) -> bool:
    """A webhook failing continuously for the configured period is switched off."""
    if failing_since is None or disable_after_seconds <= 0:
        return False
    return (now - failing_since).total_seconds() >= disable_after_seconds


def decide(
    *,
    verdict: Verdict,
    attempt: int,
    now: datetime,
    schedule: Sequence[float],
    jitter: float,
    retry_after: str | None,
    retry_after_max: float,
    failing_since: datetime | None,
    disable_after_seconds: float,
    rng: random.Random | None = None,
) -> Decision:
    """The full decision for one attempt: outcome, next time, and whether to disable."""
    if verdict is Verdict.DELIVERED:
        return Decision(Outcome.DELIVERED)
    if verdict is Verdict.GONE:
        return Decision(Outcome.DISABLED, disable_reason="endpoint answered 410 Gone")
    if should_disable(failing_since, now, disable_after_seconds):
        return Decision(
            Outcome.DISABLED,
            disable_reason=f"failing since {failing_since:%Y-%m-%d %H:%M:%S} UTC "
            f"(more than {disable_after_seconds:g} s)",
        )
    if verdict is Verdict.FAIL:
        return Decision(Outcome.FAILED)
    delay = retry_delay(schedule, attempt, jitter=jitter, rng=rng)
    if delay is None:
        return Decision(Outcome.FAILED)
    hinted = parse_retry_after(retry_after, now)
    if hinted is not None:
        delay = min(hinted, retry_after_max)
    return Decision(Outcome.RETRY, next_attempt_at=now + timedelta(seconds=delay))
