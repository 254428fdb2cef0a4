from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    """The process is alive."""
    return {"status": "alive"}


@router.get("/readyz")
def readyz(request: Request):
    """Models loaded and self-tested; 503 before that and while shutting down; in a service of
    several processes, only while every process is (server/processes.py)."""
    cluster = request.app.state.cluster
    if not request.app.state.ready or (cluster is not None and not cluster.all_ready()):
        return JSONResponse({"status": "not ready"}, status_code=503)
    if request.app.state.settings.token is not None:  # an open route: it names no model behind the token
        return {"status": "ready"}
    return {"status": "ready", "models": sorted(request.app.state.registry.models)}
