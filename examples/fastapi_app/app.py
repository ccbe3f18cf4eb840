"""An ordinary FastAPI app, with cleanroom's pure ASGI middleware in front of its sensitive routes.

    cleanroom tenant create shop --data-dir ./cleanroom-data --json > shop.json
    CLEANROOM_DATA_DIR=./cleanroom-data cleanroom exec -- \\
        uvicorn --factory examples.fastapi_app.app:create_app --host 127.0.0.1 --port 8080
    python examples/fastapi_app/client.py http://127.0.0.1:8080 shop.json "I loved it"

Every route takes sealed requests only (`Client.call`); `/healthz` alone stays open, for probes. Sealing
everything and opening the probes, rather than listing the routes to seal, also covers the routes nobody
listed. The app code is unchanged: it reads JSON and returns JSON; the middleware opens the request before
it and seals its answer after.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request

from cleanroom.integrations.asgi import CleanroomMiddleware


def build_app() -> FastAPI:
    app = FastAPI(title="reviews")

    @app.post("/v1/sentiment")
    async def sentiment(request: Request) -> dict[str, object]:
        document = await request.json()
        text = str(document.get("text", ""))
        score = sum(text.lower().count(w) for w in ("love", "great", "good")) - sum(
            text.lower().count(w) for w in ("hate", "bad", "awful")
        )
        return {"label": "positive" if score > 0 else "negative" if score < 0 else "neutral", "score": score}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def create_app(data_dir: str | Path | None = None) -> CleanroomMiddleware:
    """The wrapped app (`uvicorn --factory`); `data_dir` defaults to $CLEANROOM_DATA_DIR."""
    return CleanroomMiddleware(build_app(), data_dir=data_dir, protected_paths=("/",), open_paths=("/healthz",))
