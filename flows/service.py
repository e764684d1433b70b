"""HTTP prediction service for the ResNet champion (FastAPI): `pneumo serve`.

Routes map to pipeline.serving functions; this module holds no model logic.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from pipeline.monitoring import MONITORED_MODEL, Champion, load_champion
from pipeline.registry import champion_version
from pipeline.serving import (
    BadImageError,
    ChampionHolder,
    InferenceLogWriter,
    check_upload,
    explain_upload,
    predict_uploads,
)
from pipeline.settings import Settings
from pipeline.storage import open_store


def default_holder(settings: Settings) -> ChampionHolder:
    def resolve() -> str | None:
        found = champion_version(MONITORED_MODEL)
        return str(found.version) if found is not None else None

    return ChampionHolder(
        load=lambda: load_champion(settings.home / "cache" / "serving"), resolve_version=resolve
    )


def create_app(settings: Settings, holder: ChampionHolder | None = None) -> FastAPI:
    holder = holder or default_holder(settings)
    writer = InferenceLogWriter(open_store(settings))
    stop = threading.Event()
    # One model call at a time: Keras models are not safe to call from many threads at once.
    model_lock = asyncio.Lock()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(holder.refresh)
        threads = [
            threading.Thread(
                target=holder.poll, args=(settings.serve_poll_seconds, stop), daemon=True
            ),
            threading.Thread(target=writer.run, args=(stop,), daemon=True),
        ]
        for thread in threads:
            thread.start()
        yield
        stop.set()
        for thread in threads:
            thread.join(timeout=30)

    app = FastAPI(
        title="pneumo-ops prediction service",
        description="Pneumonia probability for chest X-rays from the pneumonia-resnet champion.",
        lifespan=lifespan,
    )
    app.state.holder, app.state.writer = holder, writer

    def serving() -> Champion:
        champion = holder.current
        if champion is None:
            raise HTTPException(
                503, detail=f"no model loaded: {holder.last_error or 'no champion yet'}"
            )
        return champion

    async def read_checked(upload: UploadFile) -> tuple[str, bytes]:
        data = await upload.read(settings.serve_max_upload_bytes + 1)
        name = upload.filename or "upload"
        check_upload(name, data, settings.serve_max_upload_bytes, settings.ingest.max_pixels)
        return name, data

    @app.exception_handler(BadImageError)
    async def bad_image(_: Request, exc: BadImageError) -> JSONResponse:
        return JSONResponse({"error": exc.reason, "image": exc.name}, status_code=exc.status)

    @app.get("/health")
    async def health() -> JSONResponse:
        champion = holder.current
        if champion is None:
            return JSONResponse(
                {"status": "not ready", "error": holder.last_error}, status_code=503
            )
        return JSONResponse(
            {"status": "ready", "model": champion.name, "version": champion.version}
        )

    @app.get("/model")
    async def model() -> dict:
        champion = serving()
        return {**champion.info, "alias": "champion", "threshold": champion.threshold}

    @app.post("/predict")
    async def predict(
        file: Annotated[UploadFile | None, File(description="one JPEG/PNG image")] = None,
        files: Annotated[list[UploadFile] | None, File(description="several images")] = None,
    ) -> dict:
        uploads = ([file] if file else []) + (files or [])
        if not uploads:
            raise HTTPException(
                422, detail="send an image in the multipart field 'file' or 'files'"
            )
        if len(uploads) > settings.serve_max_batch:
            raise HTTPException(
                413, detail=f"{len(uploads)} images, over the limit of {settings.serve_max_batch}"
            )
        items = [await read_checked(upload) for upload in uploads]
        champion = serving()
        async with model_lock:
            predictions, bodies = await asyncio.to_thread(
                predict_uploads, champion, items, settings.ingest.max_pixels
            )
        writer.submit(predictions)
        return {"predictions": bodies}

    @app.post("/explain", responses={200: {"content": {"image/png": {}}}})
    async def explain(
        file: Annotated[UploadFile, File(description="one JPEG/PNG image")],
        raw: Annotated[bool, Query(description="the heatmap values as JSON instead")] = False,
    ) -> Response:
        name, data = await read_checked(file)
        champion = serving()
        async with model_lock:
            png, heatmap = await asyncio.to_thread(explain_upload, champion, data)
        if raw:
            return JSONResponse(
                {"image": name, "version": champion.version, "heatmap": heatmap.round(4).tolist()}
            )
        return Response(png, media_type="image/png", headers={"X-Model-Version": champion.version})

    return app
