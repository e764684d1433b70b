"""`pneumo demo-loop`: the evidence a deployment gathers, on real films, in one command.

After `pneumo demo` (a champion exists). The labelled films (`DIR/{NORMAL,PNEUMONIA}/`) are
split by patient into two batches, two periods of traffic at the site:

1. the first batch goes through the prediction service, the challenger (if any) in shadow;
2. the radiologists' reads of it arrive (`labels add`); the performance check measures the
   champion's realised figures and, on a drop, retrains it on those films itself; without a drop
   the loop retrains on them as a scheduled run would. Shadow evidence is required
   (`PNEUMO_PROMOTION__REQUIRE_SHADOW_EVIDENCE`), so a retrained version that passes its gate
   stays `challenger`;
3. the second batch goes through the service with that challenger in shadow, and its reads
   arrive: films neither model trained on;
4. `compare` pairs the two models on them and recommends; the champion moves only on "promote".

Every step is the command a site would run; this module only strings them together.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from pipeline.monitor.compare import ShadowComparison
from pipeline.monitor.site import LabelledFilms, patient_halves, write_films
from pipeline.settings import Settings

Echo = Callable[[str], None]
SHADOW_EVIDENCE = "PNEUMO_PROMOTION__REQUIRE_SHADOW_EVIDENCE"


@contextmanager
def running_service(settings: Settings, timeout: float = 120.0) -> Iterator[str]:
    """The prediction service with the challenger in shadow, on a free loopback port, in a
    thread of this process; its base URL. Stopping it writes out the inference log."""
    import uvicorn

    from flows.service import create_app
    from flows.ui import free_port

    port = free_port()
    app = create_app(settings.model_copy(update={"serve_shadow": True}))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="demo-loop-service", daemon=True)
    thread.start()
    try:
        until(lambda: server.started, timeout, "the prediction service to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)


def until(ready: Callable[[], object], timeout: float, what: str | None) -> bool:
    """Wait for `ready()` to be true. After `timeout` seconds: a clear error naming `what`, or
    False when there is no `what` (worth waiting for, not required)."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            if what is None:
                return False
            raise TimeoutError(f"demo-loop: gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)
    return True


def challenger_loaded(client: httpx.Client, url: str) -> bool:
    return client.get(f"{url}/health").json()["shadow"]["challenger_version"] is not None


def shadow_done(client: httpx.Client, url: str, accepted: int) -> bool:
    """True once the shadow has scored or counted as dropped every accepted request."""
    shadow = client.get(f"{url}/health").json()["shadow"]
    return shadow["scored_requests"] + sum(shadow["dropped_requests"].values()) >= accepted


def send_films(settings: Settings, films: LabelledFilms, echo: Echo) -> None:
    """Each film through `/predict`, one at a time as films arrive at a site; the shadow
    catches up after each, so on this idle service no challenger work is dropped."""
    with running_service(settings) as url, httpx.Client(timeout=60) as client:
        # The challenger loads beside the champion, a moment later; without one (no alias) its
        # shadow work is counted as dropped.
        loaded = functools.partial(challenger_loaded, client, url)
        until(loaded, settings.serve_startup_wait_seconds, None)
        health = client.get(f"{url}/health").json()
        accepted = 0
        for name, data in zip(films.rows["name"], films.data, strict=True):
            response = client.post(f"{url}/predict", files={"file": (Path(name).name, data)})
            accepted += response.status_code == 200
            caught_up = functools.partial(shadow_done, client, url, accepted)
            until(caught_up, 60, "the challenger's shadow score")
        shadow = client.get(f"{url}/health").json()["shadow"]
    dropped = ", ".join(f"{n} {why}" for why, n in shadow["dropped_requests"].items()) or "none"
    echo(
        f"service: {accepted} of {len(films.data)} films answered by champion "
        f"v{health['version']}; challenger v{shadow['challenger_version']} scored "
        f"{shadow['scored_requests']} in shadow (dropped: {dropped})"
    )


def split_batches(films: LabelledFilms, work: Path, seed: int) -> list[tuple[Path, LabelledFilms]]:
    """Two patient halves of the films, each as a labels folder and its films."""
    batches = []
    for name, indices in zip(("first", "second"), patient_halves(films, seed), strict=True):
        batch = films.subset(indices)
        batches.append((write_films(batch, work / name), batch))
    return batches


def counts(films: LabelledFilms) -> str:
    labels = films.rows["label"].value_counts()
    return ", ".join(f"{labels.get(label, 0)} {label}" for label in ("NORMAL", "PNEUMONIA"))


def run_demo_loop(settings: Settings, films: LabelledFilms, work: Path, echo: Echo) -> bool:
    """The loop above; True when the champion moved to the retrained version."""
    from flows import output
    from flows.monitoring import add_labels, compare_shadow, performance_check, retrain_champion

    # The flows read their settings from the environment: this run requires shadow evidence.
    os.environ[SHADOW_EVIDENCE] = "true"
    strict = settings.promotion.model_copy(update={"require_shadow_evidence": True})
    settings = settings.model_copy(update={"promotion": strict})
    (first, first_films), (second, second_films) = split_batches(films, work, seed=0)
    echo(f"first batch: {counts(first_films)}; second batch: {counts(second_films)} (by patient)")

    echo("\n1. the first batch arrives")
    send_films(settings, first_films, echo)
    echo("\n2. its labels arrive; the performance check reads the champion's realised figures")
    output.print_labels_added(add_labels(str(first), trigger="none"))
    check = performance_check(trigger="direct")
    output.print_performance(check, settings)  # with the retraining, if the check started one
    if check.retraining is None or check.retraining.run is None:
        echo("no retraining started by the check: retraining on the labelled films, as scheduled")
        retrained = retrain_champion(reason="demo-loop: first batch", labeled_path=str(first))
        output.print_training(retrained, settings)

    echo("\n3. the second batch arrives, the retrained version in shadow; its labels arrive")
    send_films(settings, second_films, echo)
    output.print_labels_added(add_labels(str(second), trigger="none"))
    echo("\n4. the comparison on the second batch (films neither model trained on)")
    comparison = compare_shadow(films=str(second))  # Grad-CAMs of the films they disagree on
    for line in output.comparison_lines(comparison):
        echo(line)
    return promote_on_evidence(settings, comparison, echo)


def promote_on_evidence(settings: Settings, comparison: ShadowComparison, echo: Echo) -> bool:
    """Move the champion to the challenger when the comparison recommends it."""
    from flows.guard import champion_guard
    from pipeline.adapters.registry import Registry
    from pipeline.monitor.compare import PROMOTE
    from pipeline.predict.champion import MONITORED_MODEL

    challenger = comparison.challenger
    if comparison.recommendation != PROMOTE:
        echo(f"\nchampion stays v{comparison.champion}: {comparison.recommendation}")
        return False
    reason = f"demo-loop: shadow comparison recommends v{challenger}"
    with champion_guard(settings, "promote"):
        Registry.from_settings(settings).promote(MONITORED_MODEL, str(challenger), reason)
    echo(f"\n{MONITORED_MODEL}: champion -> version {challenger} ({reason})")
    return True
