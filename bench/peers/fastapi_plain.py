"""Peer: a plain FastAPI endpoint that calls the library once per request (no batching across
requests), run as `uvicorn bench.peers.fastapi_plain:app --workers N` (uvicorn's documented way
to use N cores: N processes on one port, each loading the model)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from bench.peers.common import load_from_environment, rescore_bodies

artifact = load_from_environment()
app = FastAPI()


@app.get("/health")
def health() -> dict:
    return {"status": "ok"}


@app.post("/v1/rescore")
async def rescore(request: Request):
    body = await request.json()
    try:
        answer = (await run_in_threadpool(rescore_bodies, artifact, [body]))[0]
    except Exception as e:  # a body the library refuses: this request fails alone
        return JSONResponse({"detail": str(e)}, status_code=422)
    return answer
