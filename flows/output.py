"""What the CLI prints: one function per result record, so every command formats alike."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, TypeVar

import typer

from pipeline.redact import redact
from pipeline.settings import IMAGENET_WEIGHTS_FILE

if TYPE_CHECKING:  # the monitoring steps load TensorFlow: not at `pneumo --help` time
    from pipeline.data.steps import IngestSummary, ValidationSummary
    from pipeline.monitor.compare import ShadowComparison
    from pipeline.monitor.labels import LabelsAdded
    from pipeline.monitor.performance import PerformanceCheck
    from pipeline.monitor.site import SiteAcceptance
    from pipeline.monitor.steps import DriftCheck, DriftOutcome, PerformanceOutcome, Retraining
    from pipeline.predict.pacs import SyncSummary
    from pipeline.predict.shards import BatchJob
    from pipeline.predict.steps import BatchPrediction
    from pipeline.settings import Settings
    from pipeline.train.candidate import ModelSummary, TrainingSummary


T = TypeVar("T")


def progress_bar(items: Iterable[T], total: int, what: str) -> Iterable[T]:
    """A `pipeline.progress.Progress` for people: a bar on a terminal, nothing in logs or pipes."""
    from tqdm import tqdm

    return tqdm(items, total=total, desc=what, unit="img", disable=None, leave=False)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `error: message` to stderr; raise the returned Exit to end with `code`.

    Exit codes: 1 for a failure at run time, 2 for a usage error (as click's own: a bad option,
    argument or setting).
    """
    typer.secho(f"error: {redact(message)}", fg="red", err=True)
    return typer.Exit(code)


def print_ingest(summary: IngestSummary) -> None:
    typer.echo(
        f"stored {summary.stored} new objects, {summary.already_stored} already present"
        + (" (nothing new to store)" if summary.stored == 0 else "")
    )
    state = "new" if summary.manifest_is_new else "unchanged, already current"
    typer.echo(f"manifest {summary.manifest_id} ({state})")
    typer.echo(summary.counts.to_string())
    typer.echo(f"quarantined files: {len(summary.quarantine)} (report: {summary.quarantine_uri})")
    for row in summary.quarantine.head(20).itertuples():
        typer.echo(f"  {row.path}: {row.issue}")
    if len(summary.shared_patients):
        typer.echo(
            f"patient ids in several official splits (reported, not failed): "
            f"{len(summary.shared_patients)}, e.g. "
            + ", ".join(summary.shared_patients["patient_id"].head(5))
        )


def print_validation(summary: ValidationSummary) -> None:
    report = summary.report
    passed = sum(c.success for c in report.checks)
    typer.echo(f"validated manifest {summary.manifest_id}: {passed}/{len(report.checks)} checks")
    typer.echo("class balance (usable images):")
    typer.echo(summary.counts.to_string())
    for title, checks in (("FAILED", report.failures), ("warning", report.warnings)):
        for check in checks:
            typer.echo(f"{title}: {check.description} ({check.failing_rows} rows)")
            for example in check.examples:
                typer.echo(f"    {example}")
    typer.echo(f"Data Docs: {report.docs_path}")
    for figure in summary.figures:
        typer.echo(f"figure: {figure}")


def print_training(summary: TrainingSummary, settings: Settings) -> None:
    from pipeline.train.uncertainty import with_interval  # numpy and pandas: not at --help

    typer.echo("")
    for model in summary.models.values():
        m = model.metrics
        typer.echo(
            f"{model.model} v{model.version}: test AUC {with_interval(m, 'roc_auc')}, "
            f"sensitivity {with_interval(m, 'sensitivity')}, specificity "
            f"{with_interval(m, 'specificity')} (95 % CI by patient), accuracy "
            f"{m['accuracy']:.3f} at threshold {model.threshold:.3f}; "
            f"weights: {model.weights_source}"
        )
        typer.echo(
            f"  calibrated ({model.calibration}): test ECE "
            f"{m['ece_uncalibrated']:.3f} -> {m['ece']:.3f}"
        )
        verdict = "PASS" if model.gate_passed else "FAIL"
        typer.echo(f"  gate {verdict}: {'; '.join(model.gate_reasons)}")
        decided = f" ({model.approval})" if model.approval else ""
        moved = "moved to this version" if model.champion else "unchanged"
        typer.echo(f"  champion: {moved}{decided}")
        typer.echo(f"  model card: pneumo card {model.model} {model.version}")
        phases = ", ".join(f"{k} {v}" for k, v in model.timings.items())
        typer.echo(f"  wall times (s): {phases}; {model.train_images_per_second} train img/s")
        fitting = ", ".join(f"{k} {v}" for k, v in model.train_phases.items())
        typer.echo(f"  training phases (s): {fitting}")
    typer.echo("data wall times (s): " + ", ".join(f"{k} {v}" for k, v in summary.timings.items()))
    typer.echo(f"\nreports: {summary.report_dir}")
    uri = settings.tracking_uri()
    if not uri.startswith("sqlite"):
        typer.echo(f"runs and registry: {redact(uri)}")
    print_next_steps(summary.models.get("resnet"))


def training_markdown(summary: TrainingSummary) -> str:
    """A training run for the Prefect artifact: one short section per model, verdict first (a
    wide table pushed the gate off screen behind the weights path; the numbers also go to a
    table artifact)."""
    from pipeline.train.uncertainty import with_interval

    models = summary.models.values()
    sizes = ", ".join(f"{kind} {m.image_size} px" for kind, m in summary.models.items())
    lines = [
        f"# training-pipeline: manifest `{summary.manifest_id}`",
        f"Data validation: {summary.validation}. Profile `{summary.profile}`, image size {sizes}.",
    ]
    for model in models:
        m = model.metrics
        champion = (
            "moved here" if model.champion else f"stays at {model.champion_version or 'none'}"
        )
        lines += [
            "",
            f"## {model.model} v{model.version}: gate "
            f"{'PASS' if model.gate_passed else 'FAIL'}, champion {champion}",
            f"- test (95 % CI by patient bootstrap): AUC {with_interval(m, 'roc_auc')}, "
            f"sensitivity {with_interval(m, 'sensitivity')}, specificity "
            f"{with_interval(m, 'specificity')}, PPV {with_interval(m, 'ppv')}, NPV "
            f"{with_interval(m, 'npv')}, accuracy {m['accuracy']:.3f} at threshold "
            f"{model.threshold:.3f}",
            f"- calibration: {model.calibration}; test ECE {m['ece_uncalibrated']:.3f} -> "
            f"{m['ece']:.3f}, Brier {m['brier_uncalibrated']:.3f} -> {m['brier']:.3f}",
            f"- gate: {'; '.join(model.gate_reasons)}",
            *([f"- approval: {model.approval}"] if model.approval else []),
            f"- model card: {model.card_uri}",
            f"- weights: {model.weights_source}",
        ]
    lines += [f"\n**{m.model} collapsed**: {m.collapsed}" for m in models if m.collapsed]
    lines += ["", "Wall times (s): " + ", ".join(f"{k} {v}" for k, v in summary.timings.items())]
    lines += [
        f"- {kind}: " + ", ".join(f"{k} {v}" for k, v in m.timings.items())
        for kind, m in summary.models.items()
    ]
    return "\n".join([*lines, "", f"Reports: `{summary.report_dir}`"])


def print_next_steps(resnet: ModelSummary | None) -> None:
    """What to do after a training run: the loop if a ResNet champion exists, else why not."""
    pneumo = ".venv/bin/pneumo"
    if resnet is not None and resnet.weights_source.startswith("none"):
        typer.echo(
            "\nnote: the ResNet trained from random weights, not ImageNet "
            f"({resnet.weights_source}). Give the weights with "
            f"PNEUMO_TRAIN__RESNET_WEIGHTS=/path/to/{IMAGENET_WEIGHTS_FILE} (or allow the Keras "
            "download) and train again."
        )
    if resnet is None or not resnet.champion_version:
        why = "; ".join(resnet.gate_reasons) if resnet else "the ResNet was not trained"
        typer.echo(
            f"\nno ResNet champion, so nothing serves predictions yet ({why}).\n"
            f"  promote a version by hand:  {pneumo} promote pneumonia-resnet VERSION "
            "--reason '...' [--force]"
        )
        return
    typer.echo(
        f"\nnext (pneumonia-resnet v{resnet.champion_version} is champion):\n"
        f"  serve it, reviewer page:  {pneumo} serve   then open http://127.0.0.1:8000/\n"
        f"  score a folder:           {pneumo} predict data/sample/test/PNEUMONIA\n"
        f"  drift demo (and retrain): {pneumo} demo-drift\n"
        f"  MLflow and Prefect UIs:   {pneumo} ui"
    )


def print_predictions(batch: BatchPrediction) -> None:
    champion = batch.champion
    typer.echo(
        f"{champion.name} v{champion.version} (champion; weights: "
        f"{champion.info.get('weights_source') or 'not recorded'}) "
        f"scored {len(batch.predictions)} images"
    )
    for row in batch.rejected.itertuples():
        typer.echo(f"  skipped {row.image}: {row.issue}")
    scored = batch.predictions
    flagged = scored[~scored["in_scope"].astype(bool)] if "in_scope" in scored else scored[:0]
    for row in flagged.itertuples():  # scored and labelled, but a reader must know
        typer.echo(
            f"  flagged {row.image} ({row.label} {row.probability:.3f}): {row.scope_reasons}"
        )
    typer.echo(f"predictions: {batch.csv_path}")
    typer.echo(f"inference log: {batch.log_uri or 'nothing logged'}")


def print_site_acceptance(result: SiteAcceptance) -> None:
    """The site's figures with their intervals, the threshold now in force, the verdict."""
    from pipeline.train.uncertainty import INTERVAL_METRICS, with_interval

    m, films = result.metrics, result.films
    typer.echo(
        f"{result.model} v{result.version} on {films['films']} site films ({films['patients']} "
        f"patients, {films['NORMAL']} NORMAL, {films['PNEUMONIA']} PNEUMONIA; manifest "
        f"{result.manifest_id})"
    )
    typer.echo(
        f"  at the previous threshold {result.previous_threshold:.4f}: sensitivity "
        f"{result.at_previous['sensitivity']:.3f}, specificity "
        f"{result.at_previous['specificity']:.3f}"
    )
    typer.echo(f"  site threshold {result.threshold:.4f} ({result.rule}), 95 % CI by patient:")
    for name in INTERVAL_METRICS:
        typer.echo(f"    {name:<12} {with_interval(m, name)}")
    for reason in result.reasons:
        typer.echo(f"  {reason}")
    verdict = "ACCEPTED" if result.accepted else "NOT ACCEPTED"
    typer.echo(
        f"{verdict}: threshold {result.threshold:.4f} is now in force for predict, "
        f"batch-predict, the service and drift (acceptance {result.acceptance_id}, by "
        f"{result.by})"
    )


def print_batch_job(job: BatchJob) -> None:
    typer.echo(
        f"job {job.job} (pneumonia-resnet v{job.model_version}): {job.shards} shards, "
        f"{job.skipped_done} already done, {job.scored_now} scored now"
    )
    typer.echo(
        f"scored {job.images_scored} images, refused {job.images_rejected}, in {job.seconds} s "
        f"({job.images_per_second} images/s)"
    )
    if job.images_out_of_scope:
        typer.echo(
            f"flagged outside the intended use: {job.images_out_of_scope} "
            "(`in_scope`, `scope_reasons` in the predictions)"
        )
    typer.echo(f"summary: {job.summary_uri}")
    if job.csv:
        typer.echo(f"predictions: {job.csv}")


def signal_lines(summary: dict) -> list[str]:
    """The prevalence, data-quality and intended-use signals of a drift check: alerts, never
    retraining."""
    lines = []
    if prevalence := summary.get("prevalence"):
        low, high = prevalence["current_band"]
        lines.append(
            f"{'ALERT prevalence shift' if prevalence['shifted'] else 'prevalence'}: predicted "
            f"PNEUMONIA rate {prevalence['current_positive_rate']:.3f} (band {low:.3f}-"
            f"{high:.3f}) vs reference {prevalence['reference_positive_rate']:.3f}, "
            f"p = {prevalence['p_value']:.4f}"
            + (" (an alert: retraining cannot answer a change of class mix)"
               if prevalence["shifted"] else "")
        )  # fmt: skip
    if (quality := summary.get("quality")) and quality["flagged"]:
        flagged = "; ".join(f"{n} {reason}" for reason, n in quality["flagged"].items())
        lines.append(f"{'ALERT data quality' if quality['alert'] else 'data quality'}: {flagged}")
    if (scope := summary.get("scope")) and scope["rows"]:
        lines.append(
            f"{'ALERT outside the intended use' if scope['alert'] else 'outside the intended use'}"
            f": {scope['outside']} of {scope['rows']} films (the cut-off lets "
            f"{scope['expected_rate']:.0%} through), p = {scope['p_value']:.4f}"
        )
    return lines


def print_drift(outcome: DriftOutcome, settings: Settings) -> None:
    summary = outcome.check.summary
    typer.echo(
        f"{summary['current_rows']} current vs {summary['reference_rows']} reference rows; "
        f"image columns drifted: {', '.join(summary['drifted_columns']) or 'none'}"
    )
    if representation := summary.get("representation"):
        typer.echo(
            "embedding components together (kernel MMD): "
            f"{'shifted' if representation['shifted'] else 'not shifted'}, "
            f"p = {representation['p_value']:.4f}"
        )
    for line in signal_lines(summary):
        typer.echo(line)
    print_retraining(outcome.retraining, settings)
    typer.echo(f"{summary['status']} (report: {summary.get('report_uri', 'none')})")


def drift_markdown(check: DriftCheck) -> str:
    from pipeline.predict.champion import MONITORED_MODEL

    result = check.result
    return "\n\n".join(
        [
            f"# drift-check: {result.status}",
            f"Model {MONITORED_MODEL} v{check.champion_version}: {result.current_rows} current "
            f"vs {result.reference_rows} reference rows; image columns drifted: "
            f"{', '.join(result.drifted_columns) or 'none'}.",
            *signal_lines(check.summary),
            f"Report: {check.report_uri or 'none (insufficient data)'}",
        ]
    )


def print_retraining(retraining: Retraining | None, settings: Settings) -> None:
    """What a check did about the drift or drop it found, if it found one."""
    if retraining is None:
        return
    if retraining.run is not None:
        print_training(retraining.run, settings)
    else:
        typer.echo(f"retraining: {retraining.note}")


def performance_lines(check: PerformanceCheck) -> list[str]:
    """One block per version of a performance check: its films, realised figures against the
    validated ones, and an ALERT line when one dropped."""
    lines = []
    for v in check.versions:
        films = v.films
        lines.append(
            f"{v.model} v{v.version}: {films['films']} labelled films ({films['patients']} "
            f"patients, {films['NORMAL']} NORMAL, {films['PNEUMONIA']} PNEUMONIA), validated on "
            f"the {v.validated_source}"
        )
        lines += [f"  {reason}" for reason in v.reasons]
        if v.alert:
            lines.append(f"ALERT performance drop: v{v.version} {', '.join(v.dropped)}")
    if not check.versions:
        lines.append("no labelled predictions in the window: nothing to judge")
    lines.append(
        f"{check.labels} labels in force, {check.unmatched} of them for images not scored (yet)"
    )
    return lines


def performance_markdown(check: PerformanceCheck) -> str:
    title = f"# performance-check: {'ALERT' if check.alert else 'no drop'}"
    return "\n\n".join([title, *performance_lines(check)])


def comparison_lines(comparison: ShadowComparison) -> list[str]:
    """A shadow comparison: the pair, how alike they answered, the labelled comparison and
    the recommendation with its reasons."""
    c = comparison
    pair = f"challenger v{c.challenger} against champion v{c.champion}"
    if not c.pairs:
        return [pair, f"{c.recommendation}: {'; '.join(c.reasons)}"]
    lines = [
        f"{pair}: {c.pairs} films scored by both",
        f"  agreement {c.agreement:.3f} ({c.disagreements} films labelled differently), score "
        f"correlation {c.correlation:.3f}, mean |difference| {c.mean_abs_difference:.3f}",
    ]
    lines += [
        f"  differ: {d['image']} ({d['sha256'][:12]}): champion {d['champion']['label']} "
        f"{d['champion']['probability']:.3f}, challenger {d['challenger']['label']} "
        f"{d['challenger']['probability']:.3f}"
        + (f"; Grad-CAM {d['gradcam']}" if "gradcam" in d else "")
        for d in c.listed[:10]
    ]
    lines.append(f"labelled: {c.labelled['NORMAL']} NORMAL, {c.labelled['PNEUMONIA']} PNEUMONIA")
    for alias, rates in c.rates.items():
        lines.append(
            f"  {alias}: sensitivity {rates['sensitivity']:.3f}, specificity "
            f"{rates['specificity']:.3f} at its own threshold"
        )
    lines.append(f"recommendation: {c.recommendation}")
    return lines + [f"  {reason}" for reason in c.reasons]


def comparison_markdown(comparison: ShadowComparison) -> str:
    title = f"# compare-shadow: {comparison.recommendation}"
    return "\n\n".join([title, *comparison_lines(comparison)])


def print_performance(outcome: PerformanceOutcome, settings: Settings) -> None:
    for line in performance_lines(outcome.check):
        typer.echo(line)
    for version, uri in outcome.check.report_uris.items():
        typer.echo(f"report v{version}: {uri}")
    print_retraining(outcome.retraining, settings)
    typer.echo("ALERT" if outcome.check.alert else "no drop")


def print_labels_added(added: LabelsAdded) -> None:
    typer.echo(
        f"added {added.added} labels ({added.superseding} replace earlier reads; earlier reads "
        f"stay stored): {added.matched} name scored images, {len(added.unmatched)} not scored "
        "(yet)"
    )
    for key in added.unmatched[:10]:
        typer.echo(f"  unmatched: {key}")
    if added.key:
        typer.echo(f"stored: {added.key}")


def print_pacs_sync(summary: SyncSummary) -> None:
    typer.echo(
        f"PACS sync of studies dated {summary.since} or later: {summary.found} chest "
        f"radiograph instances found, {summary.already_done} handled by an earlier sync"
    )
    typer.echo(
        f"scored {summary.scored}; stored {summary.reports} reports (SR)"
        + (f" and {summary.overlays} Grad-CAM captures" if summary.overlays else "")
    )
    for reason, count in sorted(summary.not_scored.items()):
        typer.echo(f"  not scored ({count}): {reason}")
    typer.echo(f"watermark: {summary.watermark}")
