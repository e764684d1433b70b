"""`pneumo` command line: builds settings, calls pipeline steps, prints what a person needs."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer

from pipeline.dataset import IngestSummary, ValidationSummary, ingest_dataset, validate_dataset
from pipeline.ingest import IngestError
from pipeline.settings import Settings
from pipeline.storage import LocalStore, ObjectNotFoundError, ObjectStore

app = typer.Typer(help="pneumo-ops: pneumonia detection in chest X-rays, from data to registry.")

DEMO_DATA = Path("data/sample")


def open_store(settings: Settings) -> ObjectStore:
    return LocalStore(settings.store_dir)


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
    except IngestError as exc:
        raise _fail(str(exc)) from None
    print_ingest(summary)
    return summary


def run_validate(settings: Settings) -> ValidationSummary:
    try:
        summary = validate_dataset(open_store(settings), settings)
    except ObjectNotFoundError as exc:
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


@app.command()
def demo(
    data: Annotated[Path, typer.Option(help="Folder to run the demo on.")] = DEMO_DATA,
) -> None:
    """Ingest and validate the bundled real sample (no servers needed)."""
    settings = load_settings()
    run_ingest(data, settings)
    run_validate(settings)
