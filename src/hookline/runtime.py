"""The process-wide handles a use case needs: settings, database, clock and secret box."""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from hookline.clock import SYSTEM_CLOCK, Clock
from hookline.config import Settings
from hookline.security import SecretBox
from hookline.store.capabilities import keeps_data_in_files
from hookline.store.db import Database
from hookline.tracing import Tracing

T = TypeVar("T")


@dataclass
class Runtime:
    settings: Settings
    db: Database
    clock: Clock = field(default=SYSTEM_CLOCK)
    box: SecretBox | None = None
    tracing: Tracing | None = None  # None when tracing is off: hot paths skip it
    _components: dict[type[Any], Any] = field(default_factory=dict, repr=False)

    @classmethod
    def create(
        cls, settings: Settings, *, clock: Clock = SYSTEM_CLOCK, schema: str | None = None
    ) -> Runtime:
        db = Database(settings.resolved_database_url, schema=schema or settings.database_schema)
        if keeps_data_in_files(db):
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        return cls(
            settings=settings,
            db=db,
            clock=clock,
            box=SecretBox(settings.encryption_key_bytes()),
            tracing=Tracing.from_settings(settings),
        )

    @property
    def secret_box(self) -> SecretBox:
        assert self.box is not None
        return self.box

    def component(self, kind: type[T]) -> T:
        """This runtime's one ``kind()`` (made on first use): what a layer above keeps per
        process, such as the platform's runner registry, without this module knowing it. Each
        runtime (so each test) has its own; nothing is filled at import time."""
        found = self._components.get(kind)
        if found is None:
            found = self._components[kind] = kind()
        return cast(T, found)


def freeze_startup_objects() -> None:
    """Move everything allocated at start-up (modules, the app, SQLAlchemy's tables...) out
    of the garbage collector's reach. Full collections then scan only what the server made
    since: on this project's server they took ~100 ms each (a pause of the whole event loop,
    seen at the p99 of request latency), and these objects live as long as the process.
    Collections also run less often (see below)."""
    gc.collect()
    gc.freeze()
    # A young collection every 20,000 allocations instead of 700: a request allocates
    # thousands of objects, nearly all freed by reference counting, so the default ran
    # several collections per request over the same live objects (~8% of the API's CPU).
    gc.set_threshold(20_000, 20, 100)
