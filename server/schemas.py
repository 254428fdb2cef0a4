"""HTTP request and response bodies (pydantic, at the edge only)."""

from __future__ import annotations

from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, create_model

from rescorer.combination import MAX_WEIGHT, Weights
from rescorer.nbest import MAX_SCORE


def json_response(body: BaseModel) -> Response:
    """A response body already built from its schema, serialized once, in pydantic's Rust core
    (a returned model would be validated again by FastAPI and encoded in Python)."""
    return Response(body.model_dump_json(), media_type="application/json")


class HypothesisIn(BaseModel):
    """A line of the canonical JSONL N-best format's `hyps`; extra named scores are allowed."""

    model_config = ConfigDict(extra="allow")
    text: str = Field(max_length=20_000)
    # strict: a JSON number, never true or "-1.5" (the JSONL reader's rule); bounded so that
    # no weighted total can overflow (rescorer.nbest.MAX_SCORE, MAX_WEIGHT below)
    am_score: float = Field(strict=True, allow_inf_nan=False, ge=-MAX_SCORE, le=MAX_SCORE)
    lm_score: float | None = Field(default=None, strict=True, allow_inf_nan=False, ge=-MAX_SCORE, le=1e-6)


class UtteranceIn(BaseModel):
    """Exactly a line of the canonical JSONL N-best format."""

    model_config = ConfigDict(extra="allow")
    utt_id: str = Field(min_length=1, max_length=512)
    hyps: list[HypothesisIn] = Field(min_length=1)
    ref: str | None = Field(default=None, max_length=20_000)


# the request's weights, made from the library's one definition (rescorer.combination.Weights)
WeightsIn = create_model(
    "WeightsIn", __config__=ConfigDict(extra="forbid"),
    **{name: (float | None, Field(default=None, strict=True, allow_inf_nan=False, ge=-MAX_WEIGHT, le=MAX_WEIGHT,
                                  description=f"{help} (default: the artifact's tuned weight, else the service's)"))
       for name, (_, help) in Weights.describe().items()},
)


class RescoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(default=None, max_length=256)
    utterances: list[UtteranceIn] = Field(min_length=1)
    weights: WeightsIn | None = None


class HypothesisOut(BaseModel):
    text: str
    am_score: float
    lm_score: float | None
    nnlm_score: float
    total: float
    rank: int
    first_pass_rank: int
    oov: int


class WerOut(BaseModel):
    before: float
    after: float
    oracle: float
    ref_words: int


class UtteranceOut(BaseModel):
    utt_id: str
    best: str
    hyps: list[HypothesisOut]
    wer: WerOut | None = None


class RescoreResponse(BaseModel):
    model: str
    weights: dict[str, float]
    utterances: list[UtteranceOut]
    wer: WerOut | None = None


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(default=None, max_length=256)
    sentences: list[str] = Field(min_length=1)
    per_token: bool = False


class SentenceScoreOut(BaseModel):
    log_prob: float
    num_tokens: int
    num_oov: int
    token_log_probs: list[float] | None = None


class ScoreResponse(BaseModel):
    model: str
    scores: list[SentenceScoreOut]


class ModelInfo(BaseModel):
    name: str
    output_kind: str
    log_z: float
    vocab_size: int
    parameters: int
    precision: str  # what the model scores in (rescorer.precision): fp32, bf16 or fp16
    weight_bytes: int  # its parameters as held in memory
    batches_requests: bool  # hypotheses of concurrent requests scored in one call (server/batching_choice.py)
    batching: str  # why: the measurement at load, or the operator's --max-batch-requests
    config: dict
    provenance: dict
