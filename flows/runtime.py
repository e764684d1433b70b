"""The CLI process and what it leaves behind: signals, orphaned servers and runs, error output.

`pneumo` may be stopped with Ctrl-C, SIGTERM or SIGKILL. The first two end the process through
Python's normal exit, so Prefect's temporary server is stopped and the flow run is marked as
crashed. SIGKILL cannot be caught: the next command finds what the killed one left (a temporary
server whose parent is gone, flow and MLflow runs still RUNNING for a dead process) and ends it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from logging.handlers import RotatingFileHandler
from pathlib import Path

from pipeline import processes
from pipeline.redact import redact, redact_logs, redact_streams
from pipeline.settings import Settings, load_settings

PARENT_ENV = "PNEUMO_PARENT_PID"  # inherited by Prefect's temporary server: whose child it is


def configure_runtime(settings: Settings) -> None:
    """Environment for Prefect, Keras and TensorFlow, set before they are imported.

    Keeps their state inside PNEUMO_HOME instead of the user's home, and gives Prefect's
    ephemeral server time to start on a slow machine. Values already set are kept.
    """
    home = settings.home.resolve()
    home.mkdir(parents=True, exist_ok=True)  # Prefect creates its home, but not the parents
    defaults = {
        "PREFECT_HOME": str(home / "prefect"),
        # Nothing leaves the machine unasked: no usage data from Prefect (server or client, whose
        # first-run notice also clutters the first screen) or MLflow. DO_NOT_TRACK=0 opts in.
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "KERAS_HOME": str(home / "keras"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # Library chatter (database set-up notes, download bars) off in CLI output; real
        # warnings and errors stay.
        "MLFLOW_LOGGING_LEVEL": "WARNING",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        # MLflow's "View run at <tracking URI>" lines: the CLI prints the URI itself, redacted.
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)


def exit_on_sigterm() -> None:
    """SIGTERM raises SystemExit like Ctrl-C raises KeyboardInterrupt: exit handlers run."""

    def stop(signum: int, _frame) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def mark_as_parent() -> None:
    """Let this process's temporary Prefect server be recognised if this process is killed."""
    os.environ[PARENT_ENV] = str(os.getpid())


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {key.decode(errors="replace"): value.decode(errors="replace") for key, value in pairs}


def stop_orphaned_servers(prefect_home: str) -> list[int]:
    """SIGTERM the temporary Prefect servers of this PREFECT_HOME whose `pneumo` is dead.

    Linux only (reads /proc); elsewhere nothing is found.
    """
    stopped = []
    for entry in Path("/proc").glob("[0-9]*"):
        env = _environ(int(entry.name))
        parent = env.get(PARENT_ENV, "")
        if (
            env.get("PREFECT__SERVER_EPHEMERAL") == "1"
            and env.get("PREFECT_HOME") == prefect_home
            and parent.isdigit()
            and not processes.pid_alive(int(parent))
        ):
            os.kill(int(entry.name), signal.SIGTERM)
            stopped.append(int(entry.name))
    return stopped


def start_temporary_server() -> threading.Thread | None:
    """Start Prefect's temporary server in the background when no server is configured.

    Its start (about 5 s: a process importing Prefect's server) then overlaps the command's
    own imports (TensorFlow, MLflow, the flows) instead of following them. Call
    `await_temporary_server` before the first Prefect API call: until then the server may not
    answer. A failed start is left to that first call, which starts it again and reports why.
    """
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return None
    from prefect.server.api.server import SubprocessASGIServer

    def start() -> None:
        with suppress(Exception):
            SubprocessASGIServer().start()

    thread = threading.Thread(target=start, name="prefect-temporary-server", daemon=True)
    thread.start()
    return thread


def await_temporary_server(thread: threading.Thread | None) -> None:
    if thread is not None:
        thread.join()


def crash_orphaned_flow_runs() -> list[str]:
    """Mark Crashed the RUNNING flow runs this host's `pneumo` processes started and left."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    this_host = processes.as_labels({processes.OWNER_HOST: socket.gethostname()})
    running = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING])),
        tags=FlowRunFilterTags(all_=this_host),
    )
    crashed = []
    with get_client(sync_client=True) as client:
        for run in client.read_flow_runs(flow_run_filter=running):
            owner = processes.from_labels(run.tags)
            if processes.is_orphaned(owner):
                pid = owner[processes.OWNER_PID]
                message = f"its process {pid} is gone (killed); found by a later pneumo"
                client.set_flow_run_state(run.id, Crashed(message=message), force=True)
                crashed.append(str(run.id))
    return crashed


class _WithoutTraceback(logging.Formatter):
    """Wraps a console formatter: the message line only; the traceback stays in other handlers."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text = saved


# Loggers whose notes below ERROR are for library developers: TensorFlow's retracing hints,
# GX's temporary-directory note, numpy's warnings (through `py.warnings`).
NOISY_LOGGERS = ("tensorflow", "absl", "great_expectations", "h5py", "py.warnings")


class _LibraryNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or not record.name.startswith(NOISY_LOGGERS)


LOG_MAX_BYTES = 10_000_000


def log_path(home: Path) -> Path:
    return home / "logs" / "pneumo.log"


def import_tensorflow_quietly(home: Path) -> None:
    """Import TensorFlow with the process's stderr (fd 2) pointed at the log file.

    Its native start-up lines (absl's "All log messages before absl::InitializeLog() is called
    are written to STDERR", the oneDNN notice) are written by C++ straight to fd 2 before absl
    is initialised, so neither TF_CPP_MIN_LOG_LEVEL (measured: 2 and 3, TensorFlow 2.21) nor
    Python's logging can hold them back; they would open every command's output. Importing it
    once here, early, sends them to the log file; later imports are no-ops.
    """
    if "tensorflow" in sys.modules:
        return
    target = log_path(home)
    target.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with target.open("ab") as log:
            os.dup2(log.fileno(), 2)
            import tensorflow  # noqa: F401 - imported for its side effect on fd 2 only
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def route_logs(home: Path, verbose: bool) -> None:
    """Everything logged (warnings included) goes to the log file; the console gets less.

    Without --verbose the console shows no library notes below ERROR and prints failures
    without their tracebacks; the log file keeps both. Idempotent within a process.
    """
    import prefect.main  # noqa: F401 - sets up Prefect's handlers first (as `from prefect import …`)

    logging.captureWarnings(True)
    root, target = logging.getLogger(), log_path(home).resolve()
    if not any(getattr(h, "baseFilename", None) == str(target) for h in root.handlers):
        target.parent.mkdir(parents=True, exist_ok=True)
        # Every command appends: rotate so years of scheduled runs do not fill the disk.
        to_file = RotatingFileHandler(target, maxBytes=LOG_MAX_BYTES, backupCount=3)
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(to_file)
    redact_logs()
    if verbose:
        return
    # Prefect's console handler sits on the root logger; its own loggers propagate to it.
    # TensorFlow adds a console handler of its own when imported before Prefect's set-up.
    consoles = [h for h in root.handlers if type(h).__name__ == "PrefectConsoleHandler"]
    for handler in [*consoles, *logging.getLogger("tensorflow").handlers]:
        if not any(isinstance(f, _LibraryNoise) for f in handler.filters):
            handler.addFilter(_LibraryNoise())
        if not isinstance(handler.formatter, _WithoutTraceback):
            handler.setFormatter(_WithoutTraceback(handler.formatter))


def write_traceback(exc: BaseException, home: Path, argv: list[str]) -> Path:
    """Append the full traceback of a failed command, secrets masked, to the state directory's
    log."""
    log = log_path(home)
    log.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    with log.open("a") as handle:
        handle.write(redact(f"\n{stamp} pneumo {' '.join(argv)}\n"))
        handle.write(redact("".join(traceback.format_exception(exc))))
    return log


def flow_settings() -> Settings:
    """The settings a flow runs with, read where it runs (the CLI's process or a worker's).

    Log handlers mask secrets first, so neither a bad setting nor anything the flow logs later
    reaches the Prefect API with a secret in it.
    """
    redact_logs()
    redact_streams()
    return load_settings()


@contextmanager
def tagged_as_owner() -> Iterator[None]:
    """Flow runs started in the block carry this process's host and pid as tags."""
    from prefect import tags

    with tags(*processes.as_labels(processes.owner())):
        yield
