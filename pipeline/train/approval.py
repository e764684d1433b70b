"""Human approval: a version that passed its gate waits for a person before it becomes champion.

The waiting itself is the flow's (a Prefect pause with a form); this module holds what does not
depend on Prefect: the request a reviewer reads, the decision's record on the version and its
model card, and the champion move it allows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pipeline.adapters.registry import Registry
from pipeline.clock import now_iso
from pipeline.errors import PneumoError
from pipeline.train.candidate import Registration
from pipeline.train.card import update_card
from pipeline.train.uncertainty import with_interval

APPROVED, REJECTED, TIMED_OUT, PENDING = "approved", "rejected", "timed out", "pending"
# Version tags: the decision's status (set once decided) and the flow run that waits for one.
STATUS_TAG, FLOW_RUN_TAG = "approval_status", "prefect_flow_run_id"


class ApprovalError(PneumoError, ValueError):
    """A decision that cannot be delivered: the version was decided, or nothing waits for it."""


@dataclass(frozen=True)
class ApprovalDecision:
    """What a reviewer decided (or that nobody did in time)."""

    status: str  # APPROVED, REJECTED or TIMED_OUT
    by: str
    reason: str
    at: str = ""

    @property
    def approved(self) -> bool:
        return self.status == APPROVED

    def record(self) -> dict[str, str]:
        return {"status": self.status, "by": self.by, "reason": self.reason, "at": self.at}


def approval_request(
    registered: Registration,
    metrics: dict[str, float],
    champion_version: str | None,
    champion_metrics: dict[str, float] | None,
    gate_reasons: list[str],
    card_uri: str,
    shadow_required: bool = False,
) -> str:
    """The Markdown a reviewer reads beside the approve/reject form: the card, the
    challenger against the champion on the same test films, and whether live (shadow)
    evidence must back the move."""
    rows = ["| | challenger v{} | champion {} |".format(
        registered.version, f"v{champion_version}" if champion_version else "(none)"
    ), "| --- | --- | --- |"]  # fmt: skip
    for name, label in (("roc_auc", "AUC"), ("sensitivity", "sensitivity"),
                        ("specificity", "specificity"), ("ece", "ECE (calibration)")):  # fmt: skip
        theirs = champion_metrics.get(name) if champion_metrics else None
        ours = (
            with_interval(metrics, name) if f"{name}_ci_low" in metrics else f"{metrics[name]:.3f}"
        )
        rows.append(f"| {label} | {ours} | {'n/a' if theirs is None else f'{theirs:.3f}'} |")
    return "\n".join([
        f"## Approve {registered.model} v{registered.version} as champion?",
        f"Model card: {card_uri} (or `pneumo card {registered.model} {registered.version}`).",
        "",
        *rows,
        "",
        "Gate: " + "; ".join(gate_reasons),
        "",
        *([SHADOW_NOTE.format(version=registered.version), ""] if shadow_required else []),
        "Choose approve or reject, give your name and a reason. Nobody deciding in time rejects.",
    ])  # fmt: skip


SHADOW_NOTE = (
    "Shadow evidence is required (PNEUMO_PROMOTION__REQUIRE_SHADOW_EVIDENCE): v{version} is "
    "`challenger` now, so a service started with `--shadow` scores it on live traffic. Approve "
    "after `pneumo compare` recommends promoting it; an approval without that evidence is "
    "recorded, and champion moves later with `pneumo promote`."
)


def waiting_flow_run(model: str, version: str, tags: dict[str, str]) -> str:
    """The flow run that waits for a decision on the version with `tags`; an ApprovalError naming
    the version when it was already decided or records no such run."""
    status = tags.get(STATUS_TAG)
    if status:
        raise ApprovalError(f"{model} v{version} was already decided: {status}")
    flow_run_id = tags.get(FLOW_RUN_TAG)
    if not flow_run_id:
        raise ApprovalError(f"{model} v{version} records no flow run that could wait for approval")
    return flow_run_id


def record_decision(
    registry: Registry, registered: Registration, decision: ApprovalDecision
) -> None:
    """Who, when and why on the version (and its run), and in its model card."""
    registry.set_version_tags(
        registered.model,
        registered.version,
        {
            STATUS_TAG: decision.status,
            "approval_by": decision.by,
            "approval_at": decision.at,
            "approval_reason": decision.reason[:4900],
        },
    )

    def add_decision(card: dict) -> None:
        card["approval"] = {**card.get("approval", {}), **decision.record()}

    update_card(registry, registered.run_id, add_decision)


def apply_decision(
    registry: Registry,
    registered: Registration,
    decision: ApprovalDecision,
    champion_at_gate: str | None,
    missing_evidence: str | None = None,
) -> Registration:
    """Record the decision; an approval moves `champion` to the version.

    The gate compared the version with the champion of its time: if `champion` moved while the
    reviewer decided, the comparison no longer holds and the approval is recorded as a
    rejection saying so (retrain, or promote by hand: `pneumo promote`). `missing_evidence`
    (shadow evidence required and not there): the approval is recorded, champion stays.
    """
    decision = ApprovalDecision(
        decision.status, decision.by, decision.reason, decision.at or now_iso()
    )
    if decision.approved:
        current = registry.champion_version(registered.model)
        now = str(current.version) if current is not None else None
        if now not in {champion_at_gate, registered.version}:  # the latter: a retried call
            decision = ApprovalDecision(
                REJECTED,
                decision.by,
                f"approval not applied: champion moved from v{champion_at_gate} to v{now} while "
                f"waiting (the gate compared against v{champion_at_gate}). {decision.reason}",
                decision.at,
            )
    held = (
        f"champion not moved: {missing_evidence}" if decision.approved and missing_evidence else ""
    )
    if held:  # recorded as given, with why champion stays
        decision = replace(decision, reason=f"{decision.reason} ({held})".lstrip())
    record_decision(registry, registered, decision)
    status = f"{decision.status} by {decision.by}" + (f"; {held}" if held else "")
    outcome = replace(registered, pending_approval=False, approval=status)
    if not decision.approved or held:
        return outcome
    reason = f"approved by {decision.by}: {decision.reason or 'no reason given'}"
    registry.move_champion(registered.model, registered.version, reason)
    return replace(outcome, champion=True)
