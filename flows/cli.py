"""`pneumo` command line: a thin layer over the pipeline steps and the flows.

The callback builds the settings and the runtime environment once; each command calls steps or
flows and hands the result to `flows.output`. Heavy libraries (TensorFlow, Prefect, MLflow) are
imported inside the commands that need them, after the runtime environment is set.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import typer
from typer.core import TyperGroup

from flows import output, runtime
from pipeline.data.shifts import DriftKind  # numpy and PIL only: cheap at --help time
from pipeline.errors import PneumoError
from pipeline.redact import redact, redact_logs, redact_streams
from pipeline.settings import Settings, load_settings


class ReportingGroup(TyperGroup):
    """The one place a command's expected failure (any `PneumoError`, a bad setting included)
    becomes an `error:` line and its exit code; anything else is left to `run`."""

    def invoke(self, ctx: typer.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except PneumoError as exc:
            raise output.fail(str(exc), exc.exit_code) from None


app = typer.Typer(
    cls=ReportingGroup,
    help="pneumo-ops: pneumonia detection in chest X-rays, from data to registry.",
)

DEMO_DATA = Path("data/sample")
ModelName = Annotated[str, typer.Argument(help="pneumonia-resnet or pneumonia-cnn")]
Reason = Annotated[str, typer.Option(help="Why; recorded on the version.")]
By = Annotated[str, typer.Option(help="Who decides (default: your login); recorded.")]
Profile = Literal["cpu-small", "full", "tiny"]
# Commands whose Prefect calls all go through `flow_process` (or `doctor`'s own wait): their
# temporary server starts while they import.
PREFECT_COMMANDS = {
    "train",
    "demo",
    "batch-predict",
    "drift",
    "retrain",
    "demo-drift",
    "demo-loop",
    "labels",
    "performance",
    "compare",
    "pacs",
    "doctor",
}
# Commands whose modules import TensorFlow: imported up front, its native lines to the log file.
TENSORFLOW_COMMANDS = (PREFECT_COMMANDS - {"doctor"}) | {
    "predict",
    "serve",
    "site",
    "card",
    "deploy",
    "approve",
    "reject",
}


@dataclass(frozen=True)
class Cli:
    """What every command gets from the callback."""

    settings: Settings
    verbose: bool = False
    server: threading.Thread | None = None  # Prefect's temporary server, starting


def print_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version

        typer.echo(f"pneumo-ops {version('pneumo-ops')}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    profile: Annotated[
        Profile | None,
        typer.Option(help="Training profile (default: PNEUMO_PROFILE, else cpu-small)."),
    ] = None,
    verbose: Annotated[
        bool, typer.Option(help="Print full tracebacks (they always go to the log file).")
    ] = False,
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """pneumo-ops: pneumonia detection in chest X-rays, from data to registry."""
    if profile is not None:
        # The flows build their settings from the environment, in this process or on a worker.
        os.environ["PNEUMO_PROFILE"] = profile
    settings = load_settings()
    if verbose:  # library notes back on (configure_runtime keeps values already set)
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "INFO")
    runtime.configure_runtime(settings)
    runtime.exit_on_sigterm()
    runtime.mark_as_parent()
    for pid in runtime.stop_orphaned_servers(os.environ["PREFECT_HOME"]):
        typer.echo(f"stopped the temporary Prefect server (pid {pid}) of a killed pneumo")
    server = None
    if ctx.invoked_subcommand in PREFECT_COMMANDS:
        server = runtime.start_temporary_server()
    if ctx.invoked_subcommand in TENSORFLOW_COMMANDS and not verbose:
        runtime.import_tensorflow_quietly(settings.home)
    ctx.obj = Cli(settings, verbose, server)


def run() -> None:
    """The `pneumo` entry point: an unexpected failure ends with its one-line cause.

    The full traceback goes to PNEUMO_HOME/logs/pneumo.log, and to the terminal with --verbose.
    """
    redact_streams()  # before anything can print a secret
    try:
        app()
    except Exception as exc:
        home = Path(os.environ.get("PNEUMO_HOME", ".pneumo"))
        log = runtime.write_traceback(exc, home, sys.argv[1:])
        if "--verbose" in sys.argv:
            raise
        cause = redact(str(exc).splitlines()[0]) if str(exc) else ""
        typer.secho(f"error: {type(exc).__name__}: {cause}", fg="red", err=True)
        typer.echo(f"(full traceback in {log}; --verbose prints it)", err=True)
        raise SystemExit(1) from None


@contextmanager
def flow_process(cli: Cli) -> Iterator[None]:
    """Around a flow call: end what killed commands left, tag the new runs with this process."""
    runtime.route_logs(cli.settings.home, cli.verbose)
    runtime.await_temporary_server(cli.server)
    crashed = runtime.crash_orphaned_flow_runs()
    if crashed:
        typer.echo(f"marked {len(crashed)} flow runs of killed pneumo processes as crashed")
    with runtime.tagged_as_owner():
        yield


def settings_of(ctx: typer.Context) -> Settings:
    return ctx.ensure_object(Cli).settings


@contextmanager
def reported(*errors: type[Exception], code: int = 1) -> Iterator[None]:
    """Built-in errors a command expects (a missing file, a bad value) as one `error:` line;
    the library's own (`PneumoError`) are reported by `ReportingGroup`."""
    try:
        yield
    except errors as exc:
        raise output.fail(str(exc), code) from None


@app.command()
def ingest(
    ctx: typer.Context, path: Annotated[Path, typer.Argument(help="Kaggle layout.")]
) -> None:
    """Store the images under PATH and write a manifest with splits by patient."""
    from pipeline.adapters.backends import open_store
    from pipeline.data.steps import ingest_dataset

    settings = settings_of(ctx)
    summary = ingest_dataset(path, open_store(settings), settings, output.progress_bar)
    output.print_ingest(summary)


@app.command()
def validate(ctx: typer.Context) -> None:
    """Validate the latest manifest with Great Expectations; exit 1 on critical failures."""
    from pipeline.adapters.backends import open_store
    from pipeline.data.steps import require_valid, validate_dataset

    settings = settings_of(ctx)
    summary = validate_dataset(open_store(settings), settings)
    output.print_validation(summary)
    require_valid(summary)


def run_training(data: Path | None, cli: Cli) -> None:
    from flows.training import training_pipeline

    with flow_process(cli):
        summary = training_pipeline(data_path=str(data) if data else None)
    output.print_training(summary, cli.settings)


@app.command()
def train(ctx: typer.Context) -> None:
    """Run the training pipeline on the latest ingested manifest."""
    run_training(None, ctx.ensure_object(Cli))


@app.command()
def demo(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(help="Folder to run the demo on.")] = DEMO_DATA,
) -> None:
    """The whole training pipeline on the bundled real sample (no servers needed)."""
    run_training(data, ctx.ensure_object(Cli))


@app.command()
def deploy(
    ctx: typer.Context,
    pool: Annotated[
        str | None, typer.Option(help="Work pool to deploy to (default: PNEUMO_WORK_POOL).")
    ] = None,
    pool_type: Annotated[
        str,
        typer.Option(
            help="If the pool is new, create it as: process, docker, kubernetes or "
            "kubernetes-gpu (templates in infra/workpools/)."
        ),
    ] = "process",
) -> None:
    """Register the flows' deployments and schedules on the Prefect server at PREFECT_API_URL."""
    from prefect.settings import PREFECT_API_URL

    settings = settings_of(ctx)
    if pool:
        settings = settings.model_copy(update={"work_pool": pool})
    if not PREFECT_API_URL.value():
        raise output.fail(
            "set PREFECT_API_URL to your Prefect server (e.g. http://127.0.0.1:4200/api)", code=2
        )
    from flows.deployments import POOL_KINDS, deploy_all

    if pool_type not in POOL_KINDS:
        raise output.fail(f"--pool-type {pool_type!r}: use one of {', '.join(POOL_KINDS)}", 2)
    with reported(FileNotFoundError):
        ids = deploy_all(settings, pool_type)  # type: ignore[arg-type]
    for name, deployment_id in ids.items():
        typer.echo(f"deployment {name} ({deployment_id}) on pool {settings.work_pool}")
    typer.echo(f"start a worker: prefect worker start --pool {settings.work_pool}")


def predict_and_print(source: str, out: Path | None, settings: Settings) -> None:
    from pipeline.adapters.backends import open_store
    from pipeline.adapters.registry import Registry
    from pipeline.predict.steps import predict_source

    with reported(FileNotFoundError):
        batch = predict_source(
            source,
            open_store(settings),
            Registry.from_settings(settings),
            settings,
            out,
            output.progress_bar,
        )
    output.print_predictions(batch)


@app.command()
def predict(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="Folder or file, else an object-store prefix.")],
    out: Annotated[Path | None, typer.Option(help="CSV to write.")] = None,
) -> None:
    """Score images with pneumonia-resnet@champion and append them to the inference log."""
    predict_and_print(source, out, settings_of(ctx))


@app.command("batch-predict")
def batch_predict(
    ctx: typer.Context,
    source: Annotated[
        str, typer.Argument(help="Folder, object-store prefix, or manifest CSV (`key` column).")
    ],
    shard_size: Annotated[int, typer.Option(min=1, help="Images per task.")] = 256,
    workers: Annotated[int, typer.Option(min=1, help="Local Dask worker processes.")] = 1,
    cluster: Annotated[
        str | None, typer.Option(help="Address of an existing Dask scheduler instead.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="CSV of every scored image.")] = None,
) -> None:
    """Score a large archive in shards on Dask; re-run the same command to resume."""
    from flows.batch_predict import batch_predict as batch_flow

    cli = ctx.ensure_object(Cli)
    with flow_process(cli), reported(FileNotFoundError, ValueError):
        summary = batch_flow(
            source, shard_size, workers, cluster, str(out.resolve()) if out else None
        )
    output.print_batch_job(summary)


def drift_and_print(
    cli: Cli, retrain: bool, last: int | None, days: int | None, inbox: Path | None = None
) -> None:
    from flows.monitoring import drift_check

    trigger = "direct" if retrain else "none"
    with flow_process(cli):
        summary = drift_check(trigger, last, days, str(inbox) if inbox else None)
    output.print_drift(summary, cli.settings)


@app.command()
def drift(
    ctx: typer.Context,
    last: Annotated[int | None, typer.Option(help="Compare the newest N predictions.")] = None,
    days: Annotated[int | None, typer.Option(help="Only predictions of the last D days.")] = None,
    retrain: Annotated[bool, typer.Option(help="Retrain the champion on drift.")] = True,
) -> None:
    """Evidently drift check of the champion's recent predictions against its reference."""
    drift_and_print(ctx.ensure_object(Cli), retrain, last, days)


@app.command()
def retrain(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option(help="Recorded on the new version.")] = "manual",
    labeled: Annotated[
        Path | None,
        typer.Option(
            help="Newly labelled films: DIR/{NORMAL,PNEUMONIA}/ or the Kaggle layout. Half "
            "their patients (PNEUMO_SITE__JUDGE_FRACTION) only judge: the gate compares "
            "challenger and champion on them and the new threshold is set on them."
        ),
    ] = None,
) -> None:
    """Fine-tune the champion (plus new labels), gate it and register it."""
    from flows.monitoring import retrain_champion

    cli = ctx.ensure_object(Cli)
    with flow_process(cli):
        summary = retrain_champion(reason=reason, labeled_path=str(labeled) if labeled else None)
    output.print_training(summary, settings_of(ctx))


def simulate(kind: DriftKind, out: Path, source: Path) -> int:
    from pipeline.monitor.simulate import simulate_batch

    with reported(FileNotFoundError, FileExistsError):
        return simulate_batch(source, out, kind)


@app.command("simulate-drift")
def simulate_drift(
    kind: Annotated[DriftKind, typer.Option(help="The acquisition change to apply.")],
    out: Annotated[Path, typer.Option(help="Empty folder for the shifted images.")],
    source: Annotated[Path, typer.Option(help="Images to shift.")] = DEMO_DATA / "test",
) -> None:
    """Write shifted copies of real X-rays (default: the bundled sample's test split)."""
    typer.echo(f"wrote {simulate(kind, out, source)} {kind} images to {out}")


@app.command("demo-drift")
def demo_drift(
    ctx: typer.Context,
    work: Annotated[Path | None, typer.Option(help="Folder for the simulated batches.")] = None,
) -> None:
    """After `pneumo demo`: an unshifted batch (no drift); a washed-out one (image drift, and
    retraining waits for labels); then labelled washed-out films arrive and it retrains."""
    from pipeline.monitor.simulate import simulate_batch

    settings = settings_of(ctx)
    work = work or settings.home / "demo-drift"
    stamp = time.strftime("%Y%m%dT%H%M%S")
    inbox = settings.drift.labeled_inbox or work / f"labelled-inbox-{stamp}"
    cli = ctx.ensure_object(Cli)
    for kind, retrain_on_drift in (("none", False), ("contrast", True)):
        batch = work / f"{kind}-{stamp}"
        count = simulate(kind, batch, DEMO_DATA / "test")
        count += simulate(kind, batch / "val", DEMO_DATA / "val")
        typer.echo(f"wrote {count} {kind} images to {batch}")
        predict_and_print(str(batch), None, settings)
        drift_and_print(cli, retrain_on_drift, count, None, inbox)
    # Radiologists label films from the new acquisition: washed-out copies of training films
    # (training patients only, so nothing reaches the splits the gates measure on).
    labelled = sum(
        simulate_batch(DEMO_DATA / "train" / label, inbox / "train" / label, "contrast", 60)
        for label in ("NORMAL", "PNEUMONIA")
    )
    typer.echo(f"wrote {labelled} labelled washed-out films to {inbox}; checking again")
    drift_and_print(cli, True, count, None, inbox)


@app.command("demo-loop")
def demo_loop(
    ctx: typer.Context,
    films: Annotated[
        Path, typer.Option(help="Labelled films of the site: DIR/{NORMAL,PNEUMONIA}/.")
    ] = DEMO_DATA / "test",
    work: Annotated[Path | None, typer.Option(help="Folder for the two batches.")] = None,
) -> None:
    """After `pneumo demo`: films arrive at the service (challenger in shadow), their labels
    arrive, the performance check and a retraining follow, a second batch is compared in
    shadow, and the champion moves only if the comparison recommends it. Exit 0 either way."""
    from flows.demo_loop import run_demo_loop
    from pipeline.adapters.registry import Registry, RegistryError
    from pipeline.monitor.site import read_labelled_films
    from pipeline.predict.champion import MONITORED_MODEL

    cli = ctx.ensure_object(Cli)
    settings = cli.settings
    work = work or settings.home / "demo-loop" / time.strftime("%Y%m%dT%H%M%S")
    with reported(TimeoutError):
        if Registry.from_settings(settings).champion_version(MONITORED_MODEL) is None:
            raise RegistryError(f"{MONITORED_MODEL} has no champion: run `pneumo demo` first")
        labelled = read_labelled_films(films, settings.ingest.max_pixels)
        with flow_process(cli):
            run_demo_loop(settings, labelled, work, typer.echo)


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    allow_anonymous: Annotated[
        bool,
        typer.Option(help="Listen beyond loopback without API keys (behind a gateway only)."),
    ] = False,
    shadow: Annotated[
        bool | None,
        typer.Option(
            "--shadow/--no-shadow",
            help="Also score each request with the challenger, off the response path "
            "(default: PNEUMO_SERVE_SHADOW).",
        ),
    ] = None,
) -> None:
    """HTTP prediction service for pneumonia-resnet@champion (OpenAPI docs at /docs)."""
    import uvicorn

    from flows.service import create_app
    from pipeline.serve.auth import exposure_problem

    settings = settings_of(ctx)
    if shadow is not None:
        settings = settings.model_copy(update={"serve_shadow": shadow})
    if problem := exposure_problem(host, settings.serve_api_keys_file, allow_anonymous):
        raise output.fail(problem, code=2)
    # A registry that does not answer is retried in the background (the service answers 503
    # meanwhile): MLflow's own retries would hold each attempt for minutes.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    with reported(ValueError, code=2):
        application = create_app(settings)
    config = uvicorn.Config(application, host=host, port=port)  # sets up uvicorn's handlers
    redact_logs()
    uvicorn.Server(config).run()


@app.command("api-key")
def api_key(
    action: Annotated[Literal["new"], typer.Argument(help="new: make a key.")],
    keys_file: Annotated[
        Path | None, typer.Option("--file", help="Append its hash to this keys file.")
    ] = None,
) -> None:
    """Make an API key for `pneumo serve`: the key is printed once; only its hash is kept."""
    from pipeline.serve.auth import add_key_hash, hash_key, new_key

    key = new_key()
    if keys_file is not None:
        add_key_hash(keys_file, key)
        typer.echo(f"added its hash to {keys_file} (set PNEUMO_SERVE_API_KEYS_FILE to it)")
    else:
        typer.echo(f"its hash, for the keys file: {hash_key(key)}")
    typer.echo(f"the key (shown only now): {key}")


@app.command()
def ui(ctx: typer.Context) -> None:
    """Start the MLflow UI and the Prefect UI on this state directory; Ctrl-C stops both."""
    from flows.ui import running_servers, server_in_use, ui_servers, wait_for_exit

    settings = settings_of(ctx)
    if problem := server_in_use(settings.tracking_uri()):
        raise output.fail(problem, code=2)
    servers = ui_servers(settings.tracking_uri(), os.environ["PREFECT_HOME"])
    # A shell starts background jobs with SIGINT ignored and Python then keeps it ignored: an
    # interrupt must still stop both servers, however this process was started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    typer.echo("starting the MLflow and Prefect UIs (loopback only)...")
    with reported(RuntimeError), running_servers(servers, settings.home / "logs") as processes:
        for server in servers:
            typer.echo(f"{server.name}: {server.url}")
        typer.echo("Ctrl-C stops both")
        try:
            ended = wait_for_exit(processes)
        except KeyboardInterrupt:
            typer.echo("stopping both")
            return
        name = servers[processes.index(ended)].name
        raise output.fail(f"{name} exited with code {ended.returncode}; stopped the other")


@app.command()
def promote(
    ctx: typer.Context,
    model: ModelName,
    version: Annotated[str, typer.Argument()],
    reason: Reason,
    force: Annotated[bool, typer.Option(help="Promote even if its gate failed.")] = False,
) -> None:
    """Move the champion alias to VERSION of MODEL by hand."""
    from flows.guard import champion_guard
    from pipeline.adapters.backends import open_store
    from pipeline.adapters.registry import Registry
    from pipeline.monitor.compare import require_shadow_evidence

    settings = settings_of(ctx)
    if settings.promotion.require_shadow_evidence and not force:
        require_shadow_evidence(open_store(settings), model, version)
    with champion_guard(settings, "promote"):
        moved = Registry.from_settings(settings).promote(model, version, reason, force=force)
    typer.echo(f"{model}: champion -> version {version}" + ("" if moved else " (already)"))


def decide(
    ctx: typer.Context, model: str, version: str, decision: str, by: str, reason: str
) -> None:
    """Send a decision to the flow run that waits for one on MODEL VERSION."""
    import getpass

    from flows.approval import send_decision

    by = by or getpass.getuser()
    flow_run_id = send_decision(settings_of(ctx), model, version, decision, by, reason)  # type: ignore[arg-type]
    typer.echo(
        f"{model} v{version}: {decision} sent to flow run {flow_run_id}; the run records it"
        + (" and moves champion" if decision == "approve" else "")
    )


@app.command()
def approve(
    ctx: typer.Context,
    model: ModelName,
    version: Annotated[str, typer.Argument()],
    reason: Reason,
    by: By = "",
) -> None:
    """Approve a version waiting for a person (PNEUMO_APPROVAL=required): it becomes champion."""
    decide(ctx, model, version, "approve", by, reason)


@app.command()
def reject(
    ctx: typer.Context,
    model: ModelName,
    version: Annotated[str, typer.Argument()],
    reason: Reason,
    by: By = "",
) -> None:
    """Reject a version waiting for a person: the champion stays."""
    decide(ctx, model, version, "reject", by, reason)


@app.command()
def card(
    ctx: typer.Context,
    model: ModelName,
    version: Annotated[str | None, typer.Argument(help="Default: the champion.")] = None,
    open_html: Annotated[
        bool, typer.Option("--open", help="Open the HTML card in a browser instead.")
    ] = False,
) -> None:
    """Print a version's model card (Markdown), or open its self-contained HTML."""
    from pipeline.adapters.registry import Registry
    from pipeline.train.card import read_version_card, write_card_page

    settings = settings_of(ctx)
    kind = "html" if open_html else "md"
    with reported(FileNotFoundError):
        version, text = read_version_card(Registry.from_settings(settings), model, version, kind)
    if not open_html:
        typer.echo(text)
        return
    import webbrowser

    path = write_card_page(text, settings.reports_dir, model, version)
    typer.echo(f"model card: {path}")
    webbrowser.open(path.resolve().as_uri())


site_app = typer.Typer(help="The deployment site's own labelled films.")
app.add_typer(site_app, name="site")


@site_app.command("accept")
def site_accept(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="Labelled films: DIR/{NORMAL,PNEUMONIA}/.")],
    version: Annotated[
        str | None, typer.Option(help="pneumonia-resnet version (default: the champion).")
    ] = None,
    by: By = "",
) -> None:
    """Measure a version on the site's labelled films and put the site's threshold in force.

    Exit 0 when the goal (sensitivity and specificity, PNEUMO_SITE__GOAL_*) holds at that
    threshold, 1 when not; the threshold is recorded either way.
    """
    import getpass

    from pipeline.adapters.registry import Registry
    from pipeline.monitor.site import accept_on_site

    settings = settings_of(ctx)
    runtime.route_logs(settings.home, ctx.ensure_object(Cli).verbose)
    result = accept_on_site(
        Registry.from_settings(settings), settings, folder, version, by or getpass.getuser()
    )
    output.print_site_acceptance(result)
    raise typer.Exit(0 if result.accepted else 1)


pacs_app = typer.Typer(help="Films from a PACS over DICOMweb, results back into it.")
app.add_typer(pacs_app, name="pacs")


@pacs_app.command("sync")
def pacs_sync(
    ctx: typer.Context,
    since: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help="Studies dated this day or later (default: PNEUMO_PACS__LOOKBACK_DAYS before "
            "the last complete sync).",
        ),
    ] = None,
    overlay: Annotated[
        bool, typer.Option(help="Also store a Grad-CAM Secondary Capture per scored film.")
    ] = False,
) -> None:
    """Score the new chest radiographs in the PACS (PNEUMO_PACS__URL) with the champion and
    store a Structured Report per film into its study; a re-run stores nothing twice."""
    from flows.pacs import pacs_sync as sync_flow

    cli = ctx.ensure_object(Cli)
    with flow_process(cli):
        summary = sync_flow(since.date().isoformat() if since else None, overlay)
    output.print_pacs_sync(summary)


labels_app = typer.Typer(help="Radiologists' reads that arrive after scoring.")
app.add_typer(labels_app, name="labels")


@labels_app.command("add")
def labels_add(
    ctx: typer.Context,
    source: Annotated[
        Path,
        typer.Argument(
            help="A CSV (image: the file name or sha256 the inference log records; label: "
            "NORMAL or PNEUMONIA; optional reader, read_at, patient) or a labels folder "
            "DIR/{NORMAL,PNEUMONIA}/ matched by content."
        ),
    ],
) -> None:
    """Store labels append-only (a later read of an image supersedes, history kept); labels of
    images never scored are kept and reported as unmatched. A bad row adds nothing."""
    from flows.monitoring import add_labels

    cli = ctx.ensure_object(Cli)
    with flow_process(cli):
        summary = add_labels(str(source), trigger="event")
    output.print_labels_added(summary)


@app.command()
def performance(
    ctx: typer.Context,
    days: Annotated[int | None, typer.Option(help="Only predictions of the last D days.")] = None,
    version: Annotated[str | None, typer.Option(help="Only this pneumonia-resnet version.")] = None,
    retrain: Annotated[
        bool, typer.Option(help="Retrain the champion on the labelled films when it dropped.")
    ] = True,
) -> None:
    """Realised performance of the logged predictions that have labels, per version, against
    what the version was validated at; exit 1 when a drop is alerted (PNEUMO_PERFORMANCE__*)."""
    from flows.monitoring import performance_check

    cli = ctx.ensure_object(Cli)
    with flow_process(cli):
        summary = performance_check(
            trigger="direct" if retrain else "none", days=days, version=version
        )
    output.print_performance(summary, cli.settings)
    raise typer.Exit(1 if summary.check.alert else 0)


@app.command()
def compare(
    ctx: typer.Context,
    days: Annotated[
        int | None, typer.Option(help="Only shadow traffic of the last D days.", min=1)
    ] = None,
    films: Annotated[
        Path | None,
        typer.Option(
            help="A folder holding the traffic's films: each listed disagreement found there "
            "gets both models' Grad-CAM, side by side, in the store.",
            exists=True,
            file_okay=False,
        ),
    ] = None,
) -> None:
    """Challenger against champion on shadow traffic (`pneumo serve --shadow`): agreement, the
    films they disagree on, and with labels a paired comparison and a recommendation."""
    from flows.monitoring import compare_shadow

    cli = ctx.ensure_object(Cli)
    with flow_process(cli):
        summary = compare_shadow(days=days, films=str(films) if films else None)
    for line in output.comparison_lines(summary):
        typer.echo(line)


@app.command()
def rollback(
    ctx: typer.Context,
    model: ModelName,
    reason: Reason,
) -> None:
    """Move the champion alias back to the version it replaced."""
    from flows.guard import champion_guard
    from pipeline.adapters.registry import Registry

    settings = settings_of(ctx)
    with champion_guard(settings, "rollback"):
        previous = Registry.from_settings(settings).rollback(model, reason)
    typer.echo(f"{model}: champion -> version {previous}")


@app.command()
def doctor(ctx: typer.Context) -> None:
    """Find and end what crashed commands left: incomplete versions, runs stuck in RUNNING."""
    from flows.guard import champion_guard
    from pipeline.adapters.registry import Registry

    cli = ctx.ensure_object(Cli)
    registry = Registry.from_settings(cli.settings)
    with champion_guard(cli.settings, "doctor"):
        incomplete = registry.mark_incomplete()
        runs = registry.fail_orphaned_runs()
    runtime.await_temporary_server(cli.server)
    flow_runs = runtime.crash_orphaned_flow_runs()
    for name, version, why in incomplete:
        typer.echo(f"{name} v{version}: marked incomplete, aliases removed ({why})")
    typer.echo(
        f"{len(incomplete)} incomplete versions marked; {len(runs)} MLflow runs and "
        f"{len(flow_runs)} flow runs of killed processes marked failed/crashed"
    )


if __name__ == "__main__":
    run()
