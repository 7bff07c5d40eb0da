"""The webhook page's rate limit and ordering (issue 15.4 and 15.6): shown, and set."""

from __future__ import annotations

import re

from tests.ui.test_dashboard_webhook_controls import _created


def _cell(page: str, cell: str) -> str:
    found = re.search(rf'id="{cell}">(.*?)</td>', page, re.S)
    assert found is not None, page
    return found.group(1)


async def test_the_page_shows_and_sets_the_rate_limit_and_ordering(dashboards, runtime) -> None:
    board = await dashboards()
    hook = await _created(
        board, runtime, "https://example.com/r", rate_limit_per_second=2.5, ordering="per_consumer"
    )
    page = (await board.http.get(f"/ui/webhooks/{hook}")).text
    assert _cell(page, "webhook-rate-limit").startswith("2.5 deliveries per second")
    assert _cell(page, "webhook-ordering").startswith("per consumer")
    assert 'name="rate_limit_per_second"' in page and 'value="2.5"' in page

    edit = f"/ui/webhooks/{hook}/edit"
    changed = await board.post(edit, {"rate_limit_per_second": "40", "ordering": "none"})
    assert changed.status_code == 303, changed.text
    page = (await board.http.get(f"/ui/webhooks/{hook}")).text
    assert _cell(page, "webhook-rate-limit").startswith("40 deliveries per second")
    assert _cell(page, "webhook-ordering").startswith("none")

    kept = await board.post(edit, {"status": "inactive"})  # the Disable button: both kept
    assert kept.status_code == 303
    page = (await board.http.get(f"/ui/webhooks/{hook}")).text
    assert _cell(page, "webhook-rate-limit").startswith("40 deliveries")

    for bad in ("0", "-3", "fast", "nan"):
        refused = await board.post(edit, {"rate_limit_per_second": bad})
        assert refused.status_code == 400, bad
    assert (await board.post(edit, {"ordering": "sometimes"})).status_code == 400

    removed = await board.post(edit, {"rate_limit_per_second": "", "ordering": "per_consumer"})
    assert removed.status_code == 303
    page = (await board.http.get(f"/ui/webhooks/{hook}")).text
    assert _cell(page, "webhook-rate-limit") == "none"
    assert _cell(page, "webhook-ordering").startswith("per consumer")
