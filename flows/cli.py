"""`pneumo` command line: builds settings, calls pipeline steps, prints what a person needs."""

from __future__ import annotations

import os
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
