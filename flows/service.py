"""HTTP prediction service for the ResNet champion (FastAPI): `pneumo serve`.

Routes map to pipeline.serve functions; this module holds no model logic. What the routes share
(settings, the champion holder, the log writer, the model lock) is one `ServiceState` on the app,
reached through FastAPI dependencies.

Every request is bounded before a route runs, by ASGI middleware (outermost first): a time limit,
the API key, the body size.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline.adapters.backends import open_store
from pipeline.adapters.registry import CHALLENGER, CHAMPION, Registry
from pipeline.monitor.performance import LAST_CHECK_KEY as PERFORMANCE_CHECK_KEY
from pipeline.predict.champion import MONITORED_MODEL, Champion, load_champion, revision_of
from pipeline.predict.inference_log import LAST_CHECK_KEY as DRIFT_CHECK_KEY
from pipeline.predict.inference_log import REJECTED_PREFIX
from pipeline.serve.auth import key_matches, presented_key, read_key_hashes
from pipeline.serve.background import ChampionHolder, InferenceLogWriter, LogSpool
from pipeline.serve.handlers import BadImageError, check_upload, explain_upload, predict_uploads
from pipeline.serve.prometheus import (
    CONTENT_TYPE,
    LastSummary,
    ServiceMetrics,
    ServiceView,
    service_metrics,
)
from pipeline.serve.shadow import ShadowScorer, Traffic
from pipeline.settings import Settings


@dataclass
class ServiceState:
    settings: Settings
    holder: ChampionHolder
    writer: InferenceLogWriter
    metrics: ServiceMetrics
    last_drift_check: LastSummary
    last_performance_check: LastSummary
    # One model call at a time: Keras models are not safe to call from many threads at once.
    # A threading lock, taken inside the worker thread around the model call only, so that a
    # request that timed out still holds it until its model call really ends.
    model_lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    traffic: Traffic = field(default_factory=Traffic)  # champion requests in flight
    shadow: ShadowScorer | None = None  # `--shadow`: the challenger scores each request too


def get_state(request: Request) -> ServiceState:
    return request.app.state.service


State = Annotated[ServiceState, Depends(get_state)]


def get_champion(state: State) -> Champion:
    """The champion serving now; 503 while none is loaded."""
    champion = state.holder.current
    if champion is None:
        raise HTTPException(
            503, detail=f"no model loaded: {state.holder.last_error or 'no champion yet'}"
        )
    return champion


Serving = Annotated[Champion, Depends(get_champion)]
router = APIRouter()


async def read_checked(upload: UploadFile, settings: Settings) -> tuple[str, bytes, dict[str, str]]:
    """(name, the pixels the model reads, the film's DICOM scope tags) of one upload."""
    data = await upload.read(settings.serve_max_upload_bytes + 1)
    name = upload.filename or "upload"
    data, tags = check_upload(
        name, data, settings.serve_max_upload_bytes, settings.ingest.max_pixels
    )
    return name, data, tags


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def reviewer_page() -> HTMLResponse:
    """The reviewers' page: drop X-rays, see probability, label and Grad-CAM beside the image."""
    return HTMLResponse(files("flows.web").joinpath("reviewer.html").read_text(encoding="utf-8"))


@router.get("/health")
async def health(state: State) -> JSONResponse:
    """Open to all (no key): 503 until a champion is loaded; the inference log's state beside.

    A failing log does not make the service unready (predictions still answer, rows are
    spooled), but it shows here and in /metrics.
    """
    champion, log = state.holder.current, state.writer.status()
    if champion is None:
        return JSONResponse(
            {"status": "not ready", "error": state.holder.last_error, "inference_log": log},
            status_code=503,
        )
    return JSONResponse(
        {
            "status": "ready",
            "model": champion.name,
            "version": champion.version,
            "weights_source": champion.info.get("weights_source"),
            "inference_log": log,
            "shadow": state.shadow.status() if state.shadow else None,
        }
    )


@router.get("/health/live")
async def alive() -> dict:
    """Open to all: 200 whenever the process answers, champion or not (a liveness probe: a
    service still waiting for its first champion must not be restarted for it)."""
    return {"status": "alive"}


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(state: State) -> Response:
    """Prometheus text format: request latency, predictions by label, the model serving, the
    inference log's state, and the last drift check (its age and result)."""
    await asyncio.to_thread(state.last_drift_check.refresh)
    await asyncio.to_thread(state.last_performance_check.refresh)
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)


@router.get("/model")
async def model(champion: Serving) -> dict:
    return {**champion.info, "alias": CHAMPION, "threshold": champion.threshold}


@router.get(
    "/model/card",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/markdown": {}}}, 404: {}},
)
async def model_card(champion: Serving, format: Literal["html", "markdown"] = "html") -> Response:
    """The serving champion's model card: self-contained HTML, or Markdown."""
    if not champion.card:
        raise HTTPException(
            404,
            detail=f"{champion.name} v{champion.version} has no model card (registered "
            "before cards existed)",
        )
    if format == "markdown":
        return PlainTextResponse(champion.card["md"], media_type="text/markdown")
    return HTMLResponse(champion.card["html"])


@router.post("/predict")
async def predict(
    state: State,
    file: Annotated[UploadFile | None, File(description="one JPEG/PNG image")] = None,
    files: Annotated[list[UploadFile] | None, File(description="several images")] = None,
) -> dict:
    settings = state.settings
    uploads = ([file] if file else []) + (files or [])
    if not uploads:
        raise HTTPException(422, detail="send an image in the multipart field 'file' or 'files'")
    if len(uploads) > settings.serve_max_batch:
        raise HTTPException(
            413, detail=f"{len(uploads)} images, over the limit of {settings.serve_max_batch}"
        )
    with state.traffic:  # from upload to answer: the shadow waits for it
        checked = [await read_checked(upload, settings) for upload in uploads]
        items = [(name, data) for name, data, _ in checked]
        champion = get_champion(state)
        predictions, bodies = await asyncio.to_thread(
            predict_uploads,
            champion,
            items,
            settings.ingest.max_pixels,
            state.model_lock,
            settings.scope,
            [tags for _, _, tags in checked],
        )
    state.writer.submit(predictions)
    if state.shadow is not None:  # queued only: the challenger scores it after this answer
        state.shadow.submit(items, champion.version)
    for body in bodies:
        state.metrics.predictions.labels(body["label"], body["version"]).inc()
        if not body["in_scope"]:
            state.metrics.out_of_scope.labels(body["version"], "flagged").inc()
    return {"predictions": bodies}


@router.post("/explain", responses={200: {"content": {"image/png": {}}}})
async def explain(
    state: State,
    file: Annotated[UploadFile, File(description="one JPEG/PNG image")],
    raw: Annotated[bool, Query(description="the heatmap values as JSON instead")] = False,
) -> Response:
    with state.traffic:
        name, data, _ = await read_checked(file, state.settings)
        champion = get_champion(state)
        max_side = state.settings.serve_explain_max_side
        png, heatmap = await asyncio.to_thread(
            explain_upload, champion, name, data, max_side, state.model_lock
        )
    if raw:
        return JSONResponse(
            {"image": name, "version": champion.version, "heatmap": heatmap.round(4).tolist()}
        )
    return Response(png, media_type="image/png", headers={"X-Model-Version": champion.version})


def error_body(message: str, image: str | None = None) -> dict:
    """The one shape of every error reply: what went wrong, and which image (if one)."""
    return {"error": message, "image": image}


async def http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(error_body(str(exc.detail)), exc.status_code, headers=exc.headers)


async def invalid_request(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()
    )
    return JSONResponse(error_body(f"invalid request: {problems}"), 422)


async def bad_image(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BadImageError)
    state = get_state(request)
    champion = state.holder.current
    state.writer.submit(exc.log_row(champion), REJECTED_PREFIX)
    if exc.out_of_scope and champion is not None:
        state.metrics.out_of_scope.labels(champion.version, "refused").inc()
    return JSONResponse(error_body(exc.reason, exc.name), status_code=exc.status)


def champion_holder(
    registry: Registry, settings: Settings, alias: str = CHAMPION
) -> ChampionHolder:
    """A holder that follows `pneumonia-resnet@alias` (default `champion`) in `registry`."""

    def resolve() -> str | None:
        found = registry.alias_version(MONITORED_MODEL, alias)
        return revision_of(found) if found is not None else None

    cache = settings.cache_dir / "serving"
    return ChampionHolder(
        load=lambda: load_champion(registry, cache, alias=alias),
        resolve_revision=resolve,
        keep_when_gone=alias == CHAMPION,
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load and follow the champion, and write the log, in background threads.

    Start-up waits a little for the first load, so a healthy registry means a ready service at
    once; a registry that does not answer leaves the service answering 503 meanwhile, never
    stuck or exiting.
    """
    state: ServiceState = app.state.service
    poll = state.settings.serve_poll_seconds
    threads = [
        threading.Thread(target=state.holder.watch, args=(poll, state.stop), daemon=True),
        threading.Thread(target=state.writer.run, args=(state.stop,), daemon=True),
    ]
    if state.shadow is not None:
        challenger = state.shadow.challenger
        threads += [
            threading.Thread(target=challenger.watch, args=(poll, state.stop), daemon=True),
            threading.Thread(target=state.shadow.run, args=(state.stop,), daemon=True),
        ]
    for thread in threads:
        thread.start()
    await asyncio.to_thread(
        state.holder.first_attempt.wait, state.settings.serve_startup_wait_seconds
    )
    yield
    state.stop.set()
    for thread in threads:
        thread.join(timeout=30)


class RequestTooLargeError(HTTPException):
    """A request body over the limit, found while it streams in (an HTTPException, so FastAPI's
    body parsing passes it on instead of turning it into a 400)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, detail=f"request body over the {max_bytes}-byte limit")


class HttpMiddleware:
    """An ASGI middleware that looks at HTTP requests only (`handle`); lifespan and other
    messages pass straight through."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope, receive, send) -> None:
        raise NotImplementedError


class BodyLimit(HttpMiddleware):
    """Refuse a request body over `max_bytes` before reading it (a declared Content-Length) or
    as soon as the streamed bytes pass it (chunked uploads).

    Without it Starlette spools a whole multipart body to disk before any route can look at it.
    """

    def __init__(self, app, max_bytes: int) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes

    async def handle(self, scope, receive, send) -> None:
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            error = RequestTooLargeError(self.max_bytes)
            await JSONResponse(error_body(error.detail), error.status_code)(scope, receive, send)
            return
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise RequestTooLargeError(self.max_bytes)
            return message

        await self.app(scope, counted, send)


# Routes anyone may call: readiness, the reviewers' page itself (it asks for a key when one is
# needed) and the API description.
OPEN_PATHS = frozenset(
    {"/health", "/health/live", "/", "/docs", "/docs/oauth2-redirect", "/openapi.json"}
)


class ApiKeys(HttpMiddleware):
    """Every route but `OPEN_PATHS` needs a known API key, checked before the body is read. No
    hashes: no key asked for (loopback-only use, see `pneumo serve`)."""

    def __init__(self, app, hashes: frozenset[str]) -> None:
        super().__init__(app)
        self.hashes = hashes

    async def handle(self, scope, receive, send) -> None:
        if not self.hashes or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        key = presented_key(dict(scope["headers"]))
        if key is None or not key_matches(key, self.hashes):
            problem = "an API key is required" if key is None else "unknown API key"
            reply = JSONResponse(
                error_body(f"{problem}: send it as 'Authorization: Bearer KEY' or 'X-API-Key'"),
                401,
                headers={"WWW-Authenticate": "Bearer"},
            )
            await reply(scope, receive, send)
            return
        await self.app(scope, receive, send)


class RequestTimeout(HttpMiddleware):
    """A request not answered within `seconds` gets a 504 (a slow upload, a queue for the
    model). A model call already running finishes in its thread and then frees the model lock;
    its answer is dropped."""

    def __init__(self, app, seconds: float) -> None:
        super().__init__(app)
        self.seconds = seconds

    async def handle(self, scope, receive, send) -> None:
        started = False

        async def tracked(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await asyncio.wait_for(self.app(scope, receive, tracked), self.seconds)
        except TimeoutError:
            if started:  # too late for a status: the client sees the reply cut short
                raise
            message = f"no answer within {self.seconds:g} s; try again later"
            await JSONResponse(error_body(message), 504)(scope, receive, send)


class Timed(HttpMiddleware):
    """Every request's answer time into the latency histogram, by route, method and status
    (paths that are no route count as `other`, so stray URLs cannot multiply the series)."""

    def __init__(self, app, metrics: ServiceMetrics, routes: frozenset[str]) -> None:
        super().__init__(app)
        self.metrics = metrics
        self.routes = routes

    async def handle(self, scope, receive, send) -> None:
        started, status = time.perf_counter(), 500

        async def tracked(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        finally:
            route = scope["path"] if scope["path"] in self.routes else "other"
            self.metrics.latency.labels(route, scope["method"], str(status)).observe(
                time.perf_counter() - started
            )


def live_view(
    holder: ChampionHolder,
    writer: InferenceLogWriter,
    drift: LastSummary,
    performance: LastSummary,
    shadow: ShadowScorer | None,
):
    """What /metrics reads from the running service at each scrape."""

    def champion() -> dict[str, str] | None:
        current = holder.current
        if current is None:
            return None
        source = str(current.info.get("weights_source") or "unknown")
        return {"name": current.name, "version": current.version, "weights_source": source}

    return ServiceView(
        champion, writer.status, drift, performance, shadow.status if shadow else None
    )


def create_app(
    settings: Settings,
    holder: ChampionHolder | None = None,
    challenger: ChampionHolder | None = None,
) -> FastAPI:
    """The service; a bad API keys file fails here, before anything listens. `holder` and
    `challenger` default to followers of the registry's aliases (the challenger only with
    `settings.serve_shadow`)."""
    hashes = (
        read_key_hashes(settings.serve_api_keys_file)
        if settings.serve_api_keys_file is not None
        else frozenset()
    )
    registry = Registry.from_settings(settings)
    holder = holder or champion_holder(registry, settings)
    app = FastAPI(
        title="pneumo-ops prediction service",
        description="Pneumonia probability for chest X-rays from the pneumonia-resnet champion.",
        lifespan=lifespan,
    )
    # The store is not asked to create buckets here: an S3 outage at start-up must not keep the
    # service from answering (log rows wait in the spool).
    spool = LogSpool(settings.spool_dir, settings.serve_spool_max_rows)
    store = open_store(settings, create_buckets=False)
    writer = InferenceLogWriter(store, spool)
    drift = LastSummary(store, DRIFT_CHECK_KEY)
    performance = LastSummary(store, PERFORMANCE_CHECK_KEY)
    traffic, shadow = Traffic(), None
    if settings.serve_shadow:
        shadow = ShadowScorer(
            challenger or champion_holder(registry, settings, CHALLENGER),
            writer,
            traffic,
            max_pending=settings.serve_shadow_max_pending,
            max_pixels=settings.ingest.max_pixels,
        )
    metrics = service_metrics(live_view(holder, writer, drift, performance, shadow))
    app.state.service = ServiceState(
        settings, holder, writer, metrics, drift, performance, traffic=traffic, shadow=shadow
    )
    app.include_router(router)
    app.add_exception_handler(BadImageError, bad_image)
    app.add_exception_handler(StarletteHTTPException, http_error)  # FastAPI's are a subclass
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_middleware(BodyLimit, max_bytes=settings.serve_max_request_bytes)
    app.add_middleware(ApiKeys, hashes=hashes)
    app.add_middleware(RequestTimeout, seconds=settings.serve_request_timeout_seconds)
    app.add_middleware(Timed, metrics=metrics, routes=frozenset(r.path for r in router.routes))
    return app
