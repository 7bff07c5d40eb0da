"""The stream's reader: events in order, late commits within the look-back, no repeats,
other accounts never."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hookline.delivery.emit import EventDraft, emit_draft
from hookline.ids import new_id
from hookline.platform.accounts import create_account
from hookline.store.event_feed import PAGE, FeedCursor, read_new_events


async def test_reader_pages_catches_late_commits_and_never_repeats(runtime: Any) -> None:
    now = runtime.clock.now()
    async with runtime.db.transaction() as conn:
        mine = (await create_account(conn, "mine", now=now)).account_id
        other = (await create_account(conn, "other", now=now)).account_id

    async def emit_at(account: Any, at: Any, count: int = 1) -> list[Any]:
        async with runtime.db.transaction() as conn:
            return [
                (
                    await emit_draft(
                        conn,
                        EventDraft(
                            account_id=account,
                            event="account.connection.up",
                            consumer_id=new_id(),
                            fields={"connectionid": str(new_id())},
                            now=at,
                        ),
                    )
                ).id
                for _ in range(count)
            ]

    cursor = FeedCursor(now)
    async with runtime.db.read() as conn:
        assert await read_new_events(conn, mine, cursor) == []

    burst = await emit_at(mine, now + timedelta(seconds=1), PAGE + 5)  # more than one page
    await emit_at(other, now + timedelta(seconds=1))
    async with runtime.db.read() as conn:
        read = await read_new_events(conn, mine, cursor)
    assert [e.id for e in read] == sorted(burst)  # time-ordered ids, same created_at

    # An older event whose transaction commits late (within the look-back) is still read,
    # and nothing already read comes again.
    late = await emit_at(mine, now + timedelta(seconds=0.5))
    async with runtime.db.read() as conn:
        assert [e.id for e in await read_new_events(conn, mine, cursor)] == late
        assert await read_new_events(conn, mine, cursor) == []
