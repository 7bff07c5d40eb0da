"""What a runner is given: one child execution and the context its code needs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
