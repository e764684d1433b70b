"""Training steps as the flows call them: prepare data, fit, evaluate, gate, register.

Each step is a plain function over values, a store, a registry and settings; the flows only wire
them into tasks and decide what to log.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipeline.adapters.registry import MODEL_NAMES, Reference, Registry, RegistryError
from pipeline.adapters.storage import ObjectStore
from pipeline.data.manifest import load_manifest
from pipeline.data.steps import ValidationSummary
from pipeline.faults import checkpoint
from pipeline.settings import ScopeConfig, Settings
from pipeline.train.approval import PENDING
from pipeline.train.calibration import strip_calibration
from pipeline.train.candidate import Registration, build_candidate, collect_card
from pipeline.train.card import IMAGES, log_card
from pipeline.train.evaluation import (
    ChampionScore,
    Evaluation,
    evaluate_candidate,
    rescore_champion,
)
from pipeline.train.fit import TrainedModel, fine_tune, resolve_weights, train_cnn, train_resnet
from pipeline.train.gates import GateDecision, decide_gate
from pipeline.train.inputs import PreparedData, prepare_data
from pipeline.train.models import inference_copy
from pipeline.train.plots import plot_augmentation_grid
from pipeline.train.uncertainty import compare_auc


@dataclass(frozen=True)
class RunContext:
    """What every model of one run shares: where its data came from, where its reports go."""

    manifest_id: str
    gx_result: str
    run_dir: Path
    artifacts: list[Path] = field(default_factory=list)
    extra_tags: dict[str, str] = field(default_factory=dict)

    @property
    def provenance(self) -> dict[str, str]:
        """Tags every version of this run carries."""
        return {"manifest_id": self.manifest_id, "gx_result": self.gx_result, **self.extra_tags}


def prepare_training_data(store: ObjectStore, settings: Settings, manifest_id: str) -> PreparedData:
    """Usable rows of each split of the manifest, with local files for tf.data; judged on the
    site's held-out films when the manifest has them (`PreparedData.judged_on_site`)."""
    _, manifest = load_manifest(store, manifest_id)
    data = prepare_data(manifest, store, settings.training, settings.cache_dir)
    return data.judged_on_site()


def start_run(validation: ValidationSummary, data: PreparedData, settings: Settings) -> RunContext:
    """The run's report folder (timestamped) with the augmentation grid every model logs."""
    report = validation.report
    run_dir = settings.reports_dir / "training" / time.strftime("%Y%m%dT%H%M%S")
    augment_png = plot_augmentation_grid(data, settings.training, run_dir / "augmentation.png")
    return RunContext(
        manifest_id=validation.manifest_id,
        gx_result=f"passed {sum(c.success for c in report.checks)}/{len(report.checks)}"
        f" critical+warning checks, {len(report.warnings)} warnings",
        run_dir=run_dir,
        artifacts=[augment_png],
    )


def train_model(
    kind: str, data: PreparedData, store: ObjectStore, settings: Settings
) -> TrainedModel:
    """Fit the CNN from scratch, or the ResNet from the weights the settings name."""
    cfg = settings.training
    if kind == "cnn":
        return train_cnn(data, cfg)
    weights = resolve_weights(cfg.resnet_weights, store, settings.cache_dir)
    return train_resnet(data, cfg, weights)


def fine_tune_champion(
    registry: Registry, data: PreparedData, settings: Settings
) -> tuple[TrainedModel, str]:
    """Warm start from the ResNet champion; returns the fine-tuned model and the version used."""
    name = MODEL_NAMES["resnet"]
    current = registry.champion_version(name)
    if current is None:
        raise RegistryError(f"{name} has no champion to retrain")
    version = str(current.version)
    # Its calibration is refitted after fine-tuning; an isotonic map would also stop gradients.
    model = strip_calibration(registry.load_version(name, version))
    # The champion's own origin too: "which weights does it have" must stay answerable.
    origin = current.tags.get("weights_source", "not recorded")
    source = f"{name} v{version} ({origin})"
    refit = settings.retrain_head == "refit"
    epochs = settings.retrain_epochs
    return fine_tune(model, source, data, settings.training, epochs, refit_head=refit), version


def evaluate_model(
    trained: TrainedModel, data: PreparedData, settings: Settings, out_dir: Path
) -> Evaluation:
    return evaluate_candidate(trained, data, settings, out_dir)


def adopt_calibrated(trained: TrainedModel, evaluation: Evaluation) -> TrainedModel:
    """The trained model with the evaluation's calibration built in: what is registered, served
    and profiled for drift, so every `probability` is on the scale the threshold was chosen on."""
    return replace(trained, model=evaluation.model or trained.model)


def rescore_current_champion(
    registry: Registry, kind: str, data: PreparedData
) -> ChampionScore | None:
    return rescore_champion(registry, MODEL_NAMES[kind], data)


def gate_model(
    evaluation: Evaluation, champion: ChampionScore | None, data: PreparedData, settings: Settings
) -> GateDecision:
    comparison = None
    if champion is not None and champion.scores is not None and evaluation.test_scores is not None:
        comparison = compare_auc(
            data.test.labels,
            evaluation.test_scores,
            champion.scores,
            data.test.rows["patient_id"].astype(str).tolist(),
            settings.gates.max_auc_drop,
        )
    return decide_gate(
        evaluation.metrics, champion.metrics if champion else None, settings.gates, comparison
    )


def register_model(
    registry: Registry,
    trained: TrainedModel,
    evaluation: Evaluation,
    decision: GateDecision,
    data: PreparedData,
    context: RunContext,
    settings: Settings,
    reference: Reference | None = None,
    hold_for_shadow: bool = False,
) -> Registration:
    """Log and register the model with its model card; `champion` moves to it, last, only if
    its gate passed, no person must approve it first and it is not `hold_for_shadow` (then it
    stays `challenger`: shadow evidence must recommend it first).

    The caller holds the champion lock from re-scoring the champion to here, so the champion
    the gate compared against is still the champion when it is replaced.
    """
    candidate = build_candidate(
        trained, evaluation, decision, data, settings, context.provenance, context.artifacts
    )
    model = inference_copy(trained.model)
    run_id, version = registry.log_candidate(candidate, model, reference, checkpoint)
    pending = decision.passed and settings.approval == "required"
    registered = Registration(MODEL_NAMES[trained.kind], version, run_id, False, pending)
    hold = decision.passed and not pending and hold_for_shadow
    if not decision.passed:
        approval = {"status": "not asked: the gate failed"}
    elif pending:
        approval = {"status": f"{PENDING}: waits for a person (PNEUMO_APPROVAL=required)"}
    elif hold:
        approval = {
            "status": "held as challenger: shadow evidence must recommend it "
            "(PNEUMO_PROMOTION__REQUIRE_SHADOW_EVIDENCE; `pneumo compare`, then `pneumo promote`)"
        }
    else:
        approval = {"status": "not required (PNEUMO_APPROVAL=auto): champion on passing the gate"}
    card = collect_card(
        registered, trained, evaluation, decision, data, settings, context.provenance, approval
    )
    card["scope"] = scope_entry(reference.scope if reference else None, settings.scope)
    card_uri = publish_card(registry, registered, card, evaluation, context.run_dir / trained.kind)
    registered = replace(registered, card_uri=card_uri)
    registry.set_description(
        registered.model, version, f"{candidate.description} Model card: {card_uri}"
    )
    if hold:  # on the version too, where the registry UI and `pneumo promote` users look
        registry.set_version_tags(registered.model, version, {"promotion": approval["status"]})
        registered = replace(registered, approval=approval["status"])
    if decision.passed and not pending and not hold:
        checkpoint("register:before-champion")
        registry.move_champion(registered.model, version, f"gate passed in run {run_id}")
        registered = replace(registered, champion=True)
    return registered


def scope_entry(fitted: dict | None, cfg: ScopeConfig) -> dict:
    """What the card says of the intended-use check: the distance's cut-off when one was
    fitted (and its flag rate on the carved test films, when measured), and the DICOM tag
    rules in force at registration."""
    kept = ("cutoff", "false_flag_rate", "reference_films", "test_films", "test_flag_rate")
    distance = {} if fitted is None else {key: fitted[key] for key in kept if key in fitted}
    rules = {"modalities": cfg.modalities, "body_parts": cfg.body_parts, "views": cfg.views}
    return {**distance, "dicom": {**rules, "age_years": cfg.age_years}}


def publish_card(
    registry: Registry, registered: Registration, card: dict, evaluation: Evaluation, folder: Path
) -> str:
    """The model card (JSON, Markdown, HTML) as artifacts of the version's run; its HTML's URI."""
    images = {
        key: path.read_bytes()
        for key, name in IMAGES.items()
        for path in evaluation.artifacts
        if path.name == name
    }
    return log_card(registry, registered.run_id, card, images, folder)
