"""`pneumo` command line: builds settings, calls pipeline steps, prints what a person needs."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer

from pipeline.dataset import IngestSummary, ValidationSummary, ingest_dataset, validate_dataset
from pipeline.ingest import IngestError
from pipeline.settings import Settings
from pipeline.storage import StorageError, open_store

app = typer.Typer(help="pneumo-ops: pneumonia detection in chest X-rays, from data to registry.")

DEMO_DATA = Path("data/sample")


def _progress(rows: Iterable[dict], total: int) -> Iterable[dict]:
    from tqdm import tqdm

    return tqdm(rows, total=total, desc="ingest", unit="img", disable=None)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg="red", err=True)
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


def load_settings() -> Settings:
    """Settings from the environment; a bad value is reported by its variable name."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"PNEUMO_{'__'.join(str(p) for p in e['loc']).upper()}={e.get('input')!r}: {e['msg']}"
            for e in exc.errors()
        )
        raise _fail(f"invalid setting: {problems}") from None


def run_ingest(path: Path, settings: Settings) -> IngestSummary:
    try:
        summary = ingest_dataset(path, open_store(settings), settings, _progress)
    except (IngestError, StorageError) as exc:
        raise _fail(str(exc)) from None
    print_ingest(summary)
    return summary


def run_validate(settings: Settings) -> ValidationSummary:
    try:
        summary = validate_dataset(open_store(settings), settings)
    except StorageError as exc:
        raise _fail(str(exc)) from None
    print_validation(summary)
    if not summary.report.success:
        raise _fail(f"{len(summary.report.failures)} critical data checks failed", code=1)
    return summary


@app.command()
def ingest(path: Annotated[Path, typer.Argument(help="Kaggle-layout folder.")]) -> None:
    """Store the images under PATH and write a manifest with splits by patient."""
    run_ingest(path, load_settings())


@app.command()
def validate() -> None:
    """Validate the latest manifest with Great Expectations; exit 1 on critical failures."""
    run_validate(load_settings())


def configure_runtime(settings: Settings) -> None:
    """Environment for Prefect, Keras and TensorFlow, set before they are imported.

    Keeps their state inside PNEUMO_HOME instead of the user's home, and gives Prefect's
    ephemeral server time to start on a slow machine. Values already set are kept.
    """
    home = settings.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    defaults = {
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "KERAS_HOME": str(home / "keras"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)


def run_training(data: Path | None, settings: Settings) -> dict:
    configure_runtime(settings)
    from flows.training import DataValidationError, training_pipeline

    try:
        summary = training_pipeline(data_path=str(data) if data else None)
    except DataValidationError as exc:
        raise _fail(str(exc), code=1) from None
    print_training(summary, settings)
    return summary


def print_training(summary: dict, settings: Settings) -> None:
    typer.echo("")
    for model in summary["models"].values():
        m = model["metrics"]
        typer.echo(
            f"{model['model']} v{model['version']}: test AUC {m['roc_auc']:.3f}, sensitivity "
            f"{m['sensitivity']:.3f}, specificity {m['specificity']:.3f}, "
            f"accuracy {m['accuracy']:.3f} at threshold {model['threshold']:.3f}; "
            f"weights: {model['weights_source']}"
        )
        verdict = "PASS" if model["gate_passed"] else "FAIL"
        typer.echo(f"  gate {verdict}: {'; '.join(model['gate_reasons'])}")
        typer.echo("  champion: " + ("moved to this version" if model["champion"] else "unchanged"))
        phases = ", ".join(f"{k} {v}" for k, v in model["timings"].items())
        typer.echo(f"  wall times (s): {phases}; {model['train_images_per_second']} train img/s")
    typer.echo(
        "data wall times (s): " + ", ".join(f"{k} {v}" for k, v in summary["timings"].items())
    )
    typer.echo(f"\nreports: {summary['report_dir']}")
    uri = settings.tracking_uri()
    if uri.startswith("sqlite"):
        typer.echo(f"look at runs and the registry: mlflow ui --backend-store-uri {uri}")
    else:
        typer.echo(f"runs and registry: {uri}")


@app.command()
def train() -> None:
    """Run the training pipeline on the latest ingested manifest."""
    run_training(None, load_settings())


@app.command()
def demo(
    data: Annotated[Path, typer.Option(help="Folder to run the demo on.")] = DEMO_DATA,
) -> None:
    """The whole training pipeline on the bundled real sample (no servers needed)."""
    run_training(data, load_settings())


@app.command()
def deploy() -> None:
    """Register the flows' deployments and schedules on the Prefect server at PREFECT_API_URL."""
    settings = load_settings()
    configure_runtime(settings)
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise _fail("set PREFECT_API_URL to your Prefect server (e.g. http://127.0.0.1:4200/api)")
    from flows.deployments import deploy_all

    for name, deployment_id in deploy_all(settings).items():
        typer.echo(f"deployment {name} ({deployment_id}) on pool {settings.work_pool}")
    typer.echo(f"start a worker: prefect worker start --pool {settings.work_pool}")


def run_predict(source: str, out: Path | None, settings: Settings) -> Path:
    configure_runtime(settings)
    from pipeline import registry
    from pipeline.monitoring import append_inference_log, load_champion, predict_batch, read_images

    registry.configure(settings.tracking_uri(), settings.experiment, settings.artifacts_dir)
    store = open_store(settings)
    try:
        champion = load_champion(settings.home / "cache" / "champions")
        items = read_images(source, store)
    except (registry.RegistryError, FileNotFoundError, StorageError) as exc:
        raise _fail(str(exc)) from None
    predictions, rejected = predict_batch(champion, items, settings.ingest.max_pixels)
    log_key = append_inference_log(store, predictions)
    out = out or settings.reports_dir / "predictions" / f"{time.strftime('%Y%m%dT%H%M%S')}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    columns = ["image", "probability", "label", "threshold", "model_name", "model_version"]
    predictions[columns].to_csv(out, index=False)
    typer.echo(f"{champion.name} v{champion.version} (champion) scored {len(predictions)} images")
    for row in rejected.itertuples():
        typer.echo(f"  skipped {row.image}: {row.issue}")
    typer.echo(f"predictions: {out}")
    typer.echo(f"inference log: {store.uri(log_key) if log_key else 'nothing logged'}")
    return out


@app.command()
def predict(
    source: Annotated[str, typer.Argument(help="Folder or file, else an object-store prefix.")],
    out: Annotated[Path | None, typer.Option(help="CSV to write.")] = None,
) -> None:
    """Score images with pneumonia-resnet@champion and append them to the inference log."""
    run_predict(source, out, load_settings())


def run_drift(settings: Settings, retrain: bool, last: int | None, days: int | None) -> dict:
    configure_runtime(settings)
    from flows.monitoring import drift_check
    from pipeline import registry

    try:
        summary = drift_check(trigger="direct" if retrain else "none", last_n=last, days=days)
    except registry.RegistryError as exc:
        raise _fail(str(exc)) from None
    typer.echo(
        f"{summary['current_rows']} current vs {summary['reference_rows']} reference rows; "
        f"drifted: {', '.join(summary['drifted_columns']) or 'none'}"
    )
    if isinstance(summary.get("retrain"), dict):
        print_training(summary["retrain"], settings)
    typer.echo(f"{summary['status']} (report: {summary.get('report_uri', 'none')})")
    return summary


@app.command()
def drift(
    last: Annotated[int | None, typer.Option(help="Compare the newest N predictions.")] = None,
    days: Annotated[int | None, typer.Option(help="Only predictions of the last D days.")] = None,
    retrain: Annotated[bool, typer.Option(help="Retrain the champion on drift.")] = True,
) -> None:
    """Evidently drift check of the champion's recent predictions against its training images."""
    run_drift(load_settings(), retrain, last, days)


@app.command()
def retrain(
    reason: Annotated[str, typer.Option(help="Recorded on the new version.")] = "manual",
    labeled: Annotated[
        Path | None, typer.Option(help="Newly labelled images, Kaggle layout.")
    ] = None,
) -> None:
    """Fine-tune the champion (plus new labels), gate it and register it."""
    settings = load_settings()
    configure_runtime(settings)
    from flows.monitoring import retrain_champion

    summary = retrain_champion(reason=reason, labeled_path=str(labeled) if labeled else None)
    print_training(summary, settings)


@app.command("simulate-drift")
def simulate_drift(
    kind: Annotated[str, typer.Option(help="none, contrast, blur, noise or brightness.")],
    out: Annotated[Path, typer.Option(help="Empty folder for the shifted images.")],
    source: Annotated[Path, typer.Option(help="Images to shift.")] = DEMO_DATA / "test",
) -> None:
    """Write shifted copies of real X-rays (default: the bundled sample's test split)."""
    from pipeline.simulate import simulate_batch

    if kind not in ("none", "contrast", "blur", "noise", "brightness"):
        raise _fail(f"--kind {kind!r}: expected none, contrast, blur, noise or brightness")
    try:
        count = simulate_batch(source, out, kind)  # type: ignore[arg-type]
    except (FileNotFoundError, FileExistsError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"wrote {count} {kind} images to {out}")


@app.command("demo-drift")
def demo_drift(
    work: Annotated[Path | None, typer.Option(help="Folder for the simulated batches.")] = None,
) -> None:
    """After `pneumo demo`: an unshifted batch (no drift), then a washed-out one (drift)."""
    settings = load_settings()
    work = work or settings.home / "demo-drift"
    source = DEMO_DATA / "test"
    for kind, retrain_on_drift in (("none", False), ("contrast", True)):
        batch = work / f"{kind}-{time.strftime('%Y%m%dT%H%M%S')}"
        simulate_drift(kind=kind, out=batch, source=source)
        simulate_drift(kind=kind, out=batch / "val", source=DEMO_DATA / "val")
        run_predict(str(batch), None, settings)
        run_drift(settings, retrain_on_drift, sum(1 for _ in batch.rglob("*.jpeg")), None)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
) -> None:
    """HTTP prediction service for pneumonia-resnet@champion (OpenAPI docs at /docs)."""
    settings = load_settings()
    configure_runtime(settings)
    import uvicorn

    from flows.service import create_app
    from pipeline import registry

    registry.configure(settings.tracking_uri(), settings.experiment, settings.artifacts_dir)
    uvicorn.run(create_app(settings), host=host, port=port)


def _registry(settings: Settings):
    from pipeline import registry

    registry.configure(settings.tracking_uri(), settings.experiment, settings.artifacts_dir)
    return registry


@app.command()
def promote(
    model: Annotated[str, typer.Argument(help="pneumonia-resnet or pneumonia-cnn")],
    version: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option(help="Why; recorded on the version.")],
    force: Annotated[bool, typer.Option(help="Promote even if its gate failed.")] = False,
) -> None:
    """Move the champion alias to VERSION of MODEL by hand."""
    registry = _registry(load_settings())
    try:
        registry.promote(model, version, reason, force=force)
    except registry.RegistryError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"{model}: champion -> version {version}")


@app.command()
def rollback(
    model: Annotated[str, typer.Argument(help="pneumonia-resnet or pneumonia-cnn")],
    reason: Annotated[str, typer.Option(help="Why; recorded on the version.")],
) -> None:
    """Move the champion alias back to the version it replaced."""
    registry = _registry(load_settings())
    try:
        previous = registry.rollback(model, reason)
    except registry.RegistryError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"{model}: champion -> version {previous}")


if __name__ == "__main__":
    app()
