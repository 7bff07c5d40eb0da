"""What a runner is given (one child execution and its context) and what it gives back."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from hookline.platform.statuses import ExecutionStatus

if TYPE_CHECKING:
    from hookline.runtime import Runtime

#: Where a flow's encrypted signing secret lives inside its stored execution definition.
SECRET_KEY = "signingsecret_encrypted"


@dataclass(frozen=True)
class RunJob:
    execution_id: uuid.UUID
    parent_id: uuid.UUID
    account_id: uuid.UUID
    sync_id: uuid.UUID
    flow_id: uuid.UUID
    consumer_id: uuid.UUID
    data: dict[str, Any] | None
    execution: dict[str, Any]  # the flow's execution definition
    runner: str
    deadline_at: datetime

    def context(self) -> dict[str, Any]:
        """The JSON body a runner hands to the account's code."""
        return {
            "executionid": str(self.execution_id),
            "parentexecutionid": str(self.parent_id),
            "flowid": str(self.flow_id),
            "syncid": str(self.sync_id),
            "consumerid": str(self.consumer_id),
            "data": self.data,
        }


@dataclass(frozen=True)
class Finished:
    """The run ended here: the execution ends with this status."""

    status: ExecutionStatus
    message: str | None = None
    error_code: str | None = None


@dataclass(frozen=True)
class HandedOff:
    """The run goes on elsewhere and reports its result: no process must resume it."""


#: What a run came to; ``None``: nothing to record (it reports later or times out).
RunOutcome = Finished | HandedOff | None


class Runner(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def resumable(self) -> bool:
        """True when this process carries the run out (and another must start it again if
        this process dies); False when the run happens elsewhere and reports back."""
        ...

    def validate(self, execution: dict[str, Any]) -> None:
        """Raise InvalidRequest when a flow's execution definition cannot run here."""

    async def run(self, runtime: Runtime, job: RunJob) -> RunOutcome:
        """Carry out ``job`` and say what it came to; the caller records it."""
        ...
