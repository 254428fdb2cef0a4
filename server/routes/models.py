from fastapi import APIRouter, Request

from rescorer.precision import precision_of, weight_bytes
from server.schemas import ModelInfo

router = APIRouter(tags=["models"])


@router.get("/models", response_model=list[ModelInfo])
def list_models(request: Request) -> list[ModelInfo]:
    """Config and provenance of every loaded artifact, and whether its requests are batched together."""
    batcher = request.app.state.batcher
    return [
        ModelInfo(name=name, output_kind=a.model.config.output_kind, log_z=a.log_z, vocab_size=len(a.vocab),
                  parameters=sum(p.numel() for p in a.model.parameters()), precision=precision_of(a.model),
                  weight_bytes=weight_bytes(a.model), batches_requests=batcher.requests_per_batch(name) != 1,
                  batching=_batching_reason(request, name), config=a.model.config.to_dict(),
                  provenance=a.provenance)
        for name, a in sorted(request.app.state.registry.models.items())
    ]


def _batching_reason(request: Request, name: str) -> str:
    settings = request.app.state.settings
    if settings.max_batch_requests is not None:
        return f"--max-batch-requests {settings.max_batch_requests}"
    choice = request.app.state.registry.batching.get(name)
    return choice.reason if choice is not None else "not measured"
