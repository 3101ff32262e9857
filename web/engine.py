"""The pages' way to the workflows: Updates and the status query, by case ID.

A case's ID is its workflow ID (CaseRecord.case_id). The caller has already checked that
the case is one of the user's schools' and that the role may take the step; the
workflow's validator then checks the step against the case's state, and its refusal
comes back here as a reason to show on the page.
"""

import asyncio
import logging
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from settings import Settings

log = logging.getLogger(__name__)

QUERY_TIMEOUT = timedelta(seconds=3)  # a page shows the SQL record rather than wait longer
UPDATE_TIMEOUT = timedelta(seconds=60)


class Refused(Exception):
    """A step the engine did not take; the message is for the member of staff."""


class CaseEngine:
    def __init__(self, settings: Settings, client: Client | None = None):
        self.settings = settings
        self._client = client
        self._lock = asyncio.Lock()

    async def client(self) -> Client:
        """Connected on first use, so that pages from SQL work while Temporal starts."""
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    self._client = await Client.connect(
                        self.settings.temporal_address,
                        namespace=self.settings.temporal_namespace,
                    )
        return self._client

    async def status(self, case_id: str) -> dict[str, Any] | None:
        """The workflow's `status` query as plain values, or None if it cannot be had now
        (the page then shows what SQL holds)."""
        try:
            client = await self.client()
            handle = client.get_workflow_handle(case_id)
            found = await handle.query("status", rpc_timeout=QUERY_TIMEOUT)
        except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError, OSError) as e:
            log.info("status of case %s unavailable: %s", case_id, type(e).__name__)
            return None
        except RuntimeError as e:  # connecting failed
            log.info("status of case %s unavailable: %s", case_id, type(e).__name__)
            return None
        return found if isinstance(found, dict) else None

    async def update(self, case_id: str, name: str, arg: Any) -> Any:
        """Run the Update `name` on the case; raises Refused with the reason to show."""
        try:
            client = await self.client()
        except (RuntimeError, OSError) as e:
            log.warning("cannot reach Temporal for case %s: %s", case_id, type(e).__name__)
            raise Refused(
                "The case engine cannot be reached just now; nothing was recorded. "
                "Please try again in a minute."
            ) from None
        handle = client.get_workflow_handle(case_id)
        try:
            return await handle.execute_update(name, arg, rpc_timeout=UPDATE_TIMEOUT)
        except WorkflowUpdateFailedError as e:
            cause = e.cause
            message = getattr(cause, "message", None) or str(cause)
            raise Refused(_sentence(message)) from None
        except RPCError as e:
            log.info("update %s on case %s failed: %s", name, case_id, e.status)
            if e.status == RPCStatusCode.NOT_FOUND:
                raise Refused("This case is closed, so nothing was recorded.") from None
            if e.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
                raise Refused(
                    "The case engine did not answer in time. The step may still be recorded: "
                    "reload the page before trying again."
                ) from None
            raise Refused(
                "The case engine could not take this step just now; nothing was recorded."
            ) from None


def _sentence(message: str) -> str:
    message = message.strip()
    if not message:
        return "The case refused this step."
    message = message[0].upper() + message[1:]
    return message if message.endswith((".", "!", "?")) else message + "."
