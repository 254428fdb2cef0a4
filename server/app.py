"""The FastAPI application: `create_app(settings)`; models load in the lifespan.

One way to start the service: `rescorer-server` (flags and RESCORER_* variables, server/cli.py),
which runs uvicorn with the settings that live outside the application: host, port, the
request-read deadline and the connection limit (server/connections.py). Started by uvicorn's own
command line (`uvicorn --factory server.app:create_app`), uvicorn would take those from its own
flags and silently ignore ours, so `create_app` refuses to be built without settings.
"""

from __future__ import annotations

import hmac
import math
import os
import time
from contextlib import asynccontextmanager
from pathlib import Path

import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from rescorer.device import pick_device
from server.batcher import DeadlineExceeded, DynamicBatcher, Overloaded
from server.metrics import create_metrics
from server.processes import Cluster
from server.registry import Registry, UnknownModel, load_registry
from server.routes import health, models, rescore, score
from server.settings import Settings

RETRY_AFTER_S = "1"
NO_FRAMEWORK_TELEMETRY = {"tracing": False, "metrics": False, "logs": False}
ACCELERATOR_BATCH_DELAY_MS = 5.0


class BodyLimit:
    """413 for bodies over the limit, by Content-Length or by counting a streamed body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            response = JSONResponse({"detail": f"request body over {self.max_bytes} bytes"}, status_code=413)
            return await response(scope, receive, send)
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, f"request body over {self.max_bytes} bytes")
            return message

        return await self.app(scope, counted, send)


class RequestMetrics:
    """Requests by route and status, and latency by route (pure ASGI: no per-request task or stream);
    in a service of several processes, each response names the process that answered it
    (`x-rescorer-process: <slot>`)."""

    def __init__(self, app: ASGIApp, metrics, process: int | None = None) -> None:
        self.app, self.metrics = app, metrics
        self.process_header = None if process is None else (b"x-rescorer-process", str(process).encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500  # if the app raises before starting a response, the server answers 500

        async def send_and_note(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if self.process_header is not None:
                    message = {**message, "headers": [*message.get("headers", ()), self.process_header]}
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            path = scope["path"] if scope.get("route") is not None else "unmatched"  # fixed paths only
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)


def available_cores() -> int:
    """The CPUs this process may run on: its affinity, capped by a cgroup CPU quota (a container
    limited to 2 CPUs on a 64-core host gets 2, rounded up, not 64)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return max(1, min(cores, math.ceil(quota))) if quota is not None else cores


def cgroup_cpu_quota(root: str = "/sys/fs/cgroup") -> float | None:
    """CPUs allowed by the cgroup's quota (v2 `cpu.max`, else v1 `cpu.cfs_quota_us` /
    `cpu.cfs_period_us`), or None when there is no quota or no cgroup file to read."""
    try:
        quota, period = Path(root, "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int(Path(root, "cpu", "cpu.cfs_quota_us").read_text())
        period = int(Path(root, "cpu", "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def scoring_threads(settings: Settings, device: torch.device, processes: int = 1) -> tuple[int, int]:
    """(scoring workers, torch threads) of one of `processes` processes: on CPU one worker per
    core of its share of the cores, with one torch thread each, as independent batches on
    separate cores outrun one batch on all of them (server/batcher.py); on an accelerator one
    worker, the torch threads left as they are."""
    if device.type != "cpu":
        return settings.scoring_workers or 1, settings.torch_threads or torch.get_num_threads()
    cores = max(1, available_cores() // processes)
    workers = settings.scoring_workers or cores
    return workers, settings.torch_threads or max(1, cores // workers)


def batching_delay_ms(settings: Settings, device: torch.device) -> float:
    """How long a batch waits for company: on CPU not at all, as a call of one request costs
    about what its share of a larger batch does (bench/server_load.py: on the service's
    single-threaded workers the library scored 1.02x as fast with 12 utterances per call as
    with one, and a 5 ms wait bought nothing; docs/RESULTS.md); on an accelerator 5 ms (a
    choice, not measured)."""
    if settings.max_delay_ms is not None:
        return settings.max_delay_ms
    return 0.0 if device.type == "cpu" else ACCELERATOR_BATCH_DELAY_MS


def create_app(settings: Settings | None = None, registry: Registry | None = None,
               cluster: Cluster | None = None) -> FastAPI:
    """The app; `registry`: models already loaded (the CLI loads them first, so that a bad
    artifact is one line and exit 2 instead of a failed lifespan), else loaded in the lifespan;
    `cluster`: this app is one process of several behind one port (server/processes.py)."""
    if settings is None:
        raise RuntimeError(
            "server.app:create_app needs the service's settings: start the service with rescorer-server"
            " (every flag and RESCORER_* variable, including --host, --port, --request-read-timeout-s and"
            " --max-connections, which uvicorn's own command line would silently ignore)")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        device = pick_device(settings.device)
        workers, threads = scoring_threads(settings, device, 1 if cluster is None else cluster.processes)
        torch.set_num_threads(threads)  # threads started after this (the workers) take this count
        models = registry or load_registry(settings.model_dir, device, settings.precision, settings.batch_tokens)
        batcher = DynamicBatcher(models, app.state.metrics, settings.batch_tokens, batching_delay_ms(settings, device),
                                 settings.queue_tokens, settings.max_batch_requests, settings.telemetry_share,
                                 workers=workers)
        batcher.start()
        app.state.registry, app.state.batcher, app.state.ready = models, batcher, True
        if cluster is not None:
            cluster.mark_ready()
        yield
        app.state.ready = False
        if cluster is not None:
            cluster.mark_stopping()
        batcher.stop()

    # FastAPI's own OpenTelemetry hooks off: the service has its Prometheus metrics, and the hooks
    # look up the telemetry providers (environment variables included) on every request
    app = FastAPI(title="rescorer", version="1", lifespan=lifespan, telemetry=NO_FRAMEWORK_TELEMETRY,
                  description="Rescore ASR N-best lists with self-normalized LSTM language models.")
    app.state.settings, app.state.metrics, app.state.ready = settings, create_metrics(), False
    app.state.cluster = cluster
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    if settings.token is not None:
        # before anything reads the body (inside the metrics, so 401s are counted): without
        # the token, malformed or deeply nested JSON is a 401 like any other request
        # with a token, only the liveness and readiness probes stay open, and they name nothing
        app.add_middleware(BearerToken, token=settings.token, prefixes=PROTECTED_PREFIXES)
    app.add_middleware(RequestMetrics, metrics=app.state.metrics, process=None if cluster is None else cluster.slot)

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, exc: Overloaded):
        return JSONResponse({"detail": f"overloaded: {exc}"}, status_code=503, headers={"Retry-After": RETRY_AFTER_S})

    @app.exception_handler(ClientDisconnect)
    async def disconnected(request: Request, exc: ClientDisconnect):
        # the client left (or was dropped for not sending its body in time): nobody to answer
        return Response(status_code=400)

    @app.exception_handler(DeadlineExceeded)
    async def deadline(request: Request, exc: DeadlineExceeded):
        return JSONResponse({"detail": f"deadline exceeded: {exc}"}, status_code=504)

    @app.exception_handler(UnknownModel)
    async def unknown_model(request: Request, exc: UnknownModel):
        return JSONResponse({"detail": exc.args[0]}, status_code=404)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    app.include_router(rescore.router, prefix="/v1")
    app.include_router(score.router, prefix="/v1")
    app.include_router(models.router, prefix="/v1")
    app.include_router(health.router)


    @app.get("/metrics", include_in_schema=False)
    def metrics() -> PlainTextResponse:
        if cluster is None:
            return PlainTextResponse(generate_latest(app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
        merged = CollectorRegistry()  # every process's files, the dead ones' counters included
        MultiProcessCollector(merged, path=str(cluster.metrics_dir))
        return PlainTextResponse(generate_latest(merged), media_type=CONTENT_TYPE_LATEST)

    return app


PROTECTED_PREFIXES = ("/v1", "/metrics", "/docs", "/redoc", "/openapi.json")


class BearerToken:
    """Pure ASGI: requests under any of `prefixes` need `Authorization: Bearer <token>`
    (compared in constant time); the check runs before the request body is read."""

    def __init__(self, app, token: str, prefixes: tuple[str, ...]) -> None:
        self.app, self.token, self.prefixes = app, token.encode(), prefixes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefixes):
            header = dict(scope["headers"]).get(b"authorization", b"")
            scheme, _, given = header.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given, self.token):
                response = JSONResponse({"detail": "missing or wrong bearer token"}, status_code=401,
                                        headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
