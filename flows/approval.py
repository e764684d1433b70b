"""The approval pause: a version that passed its gate waits for a person (PNEUMO_APPROVAL=required).

The flow pauses with a form (Prefect's `pause_flow_run(wait_for_input=...)`): the Prefect UI shows
it beside the request (model card link, challenger against champion); `pneumo approve`/`reject`
send the same input through the API. No decision within the timeout rejects.
"""

from __future__ import annotations

from typing import Literal

from prefect import get_run_logger
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput

from pipeline.adapters.registry import Registry
from pipeline.clock import now_iso
from pipeline.settings import Settings
from pipeline.train.approval import (
    APPROVED,
    REJECTED,
    TIMED_OUT,
    ApprovalDecision,
    ApprovalError,
    waiting_flow_run,
)

PAUSE_KEY = "approval"


class ApprovalInput(RunInput):
    """The form a reviewer fills in."""

    decision: Literal["approve", "reject"]
    reviewer: str
    reason: str = ""


def wait_for_approval(request: str, timeout_seconds: int) -> ApprovalDecision:
    """Pause the flow run until a person decides; a timeout is a rejection."""
    form = ApprovalInput.with_initial_data(description=request, decision="reject")
    try:
        answer = pause_flow_run(
            wait_for_input=form, timeout=timeout_seconds, poll_interval=5, key=PAUSE_KEY
        )
    except FlowPauseTimeout:
        get_run_logger().warning("nobody approved within %d s: rejected", timeout_seconds)
        return ApprovalDecision(
            TIMED_OUT, "nobody", f"no decision within {timeout_seconds} s", now_iso()
        )
    status = APPROVED if answer.decision == "approve" else REJECTED
    get_run_logger().info("%s by %s: %s", status, answer.reviewer, answer.reason)
    return ApprovalDecision(status, answer.reviewer.strip() or "unnamed", answer.reason, now_iso())


def send_decision(
    settings: Settings,
    model: str,
    version: str,
    decision: Literal["approve", "reject"],
    by: str,
    reason: str,
) -> str:
    """Resume the flow run that waits for a decision on MODEL VERSION, as the Prefect UI's form
    does; returns that flow run's id. An `ApprovalError` when nothing waits for one."""
    from uuid import UUID

    from prefect.exceptions import ObjectNotFound
    from prefect.flow_runs import resume_flow_run

    found = Registry.from_settings(settings).version(model, version)
    flow_run_id = waiting_flow_run(model, version, found.tags)
    try:
        resume_flow_run(
            UUID(flow_run_id), run_input={"decision": decision, "reviewer": by, "reason": reason}
        )
    except ObjectNotFound:
        raise ApprovalError(f"flow run {flow_run_id} is not on this Prefect server") from None
    except (RuntimeError, FlowPauseTimeout) as exc:  # NotPausedError is a RuntimeError
        raise ApprovalError(f"flow run {flow_run_id} is not waiting for approval: {exc}") from None
    return flow_run_id
