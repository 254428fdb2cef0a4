"""Service settings: flags of `rescorer-server` and `RESCORER_*` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rescorer.artifact import MAX_WEIGHT


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RESCORER_", extra="forbid", protected_namespaces=())

    model_dir: Path = Field(description="an artifact, or a directory whose subdirectories are artifacts")
    host: str = "127.0.0.1"  # loopback unless told otherwise
    port: int = 8000
    token: str | None = None  # bearer token required on every /v1 route when set

    @field_validator("token")
    @classmethod
    def _token_not_blank(cls, value: str | None) -> str | None:
        # RESCORER_TOKEN= (empty) would otherwise let "Authorization: Bearer" with no token in
        if value is not None and not value.strip():
            raise ValueError("an empty token would accept an empty credential; unset it or give a token")
        return value
    device: str = "auto"  # auto = cuda when present, else cpu
    half_precision: bool = False  # fp16 weights on CUDA
    # scoring threads, each scoring its own batch; default: on CPU one per core, on CUDA one
    scoring_workers: int | None = Field(default=None, ge=1)
    torch_threads: int | None = Field(default=None, ge=1)  # per process; default: cores // workers on CPU
    # limits
    max_body_bytes: int = 4 * 1024 * 1024
    max_utterances: int = 256  # per request
    max_hyps_per_utterance: int = 1000
    max_words_per_hyp: int = 200
    max_words_per_ref: int = 1000
    # per request, the sclite alignments behind the WER fields (pure Python, about 3.6 M cells/s
    # on the project's 2-core machine): sum over utterances of |ref| x 3 x the longest hypothesis
    max_alignment_cells: int = 4_000_000
    max_sentences: int = 4096  # per /v1/score request
    # dynamic batching
    batch_tokens: int = 8192  # a batch is scored once it holds this many tokens ...
    # ... or once its oldest request has waited this long; default: 0 on CPU, where batching
    # gains little (batches still form from what queues while the workers are busy), 5 on CUDA
    max_delay_ms: float | None = Field(default=None, ge=0.0)
    max_batch_requests: int | None = None  # 1 = no batching across requests (for measurement)
    queue_tokens: int = 200_000  # tokens waiting beyond this: 503 with Retry-After
    request_timeout_s: float = 30.0  # a request not answered by then: 504
    # default combination weights (a request may give its own)
    am_weight: float = Field(default=1.0, ge=-MAX_WEIGHT, le=MAX_WEIGHT, allow_inf_nan=False)
    lm_weight: float = Field(default=1.0, ge=-MAX_WEIGHT, le=MAX_WEIGHT, allow_inf_nan=False)
    interp_weight: float = Field(default=0.5, ge=-MAX_WEIGHT, le=MAX_WEIGHT, allow_inf_nan=False)
    word_penalty: float = Field(default=0.0, ge=-MAX_WEIGHT, le=MAX_WEIGHT, allow_inf_nan=False)
    oov_penalty: float = Field(default=0.0, ge=-MAX_WEIGHT, le=MAX_WEIGHT, allow_inf_nan=False)
    # self-normalization telemetry: exact log Z(h) at live positions, spending at most this
    # share of the scoring time on it (0 = off); see server/batcher.py
    telemetry_share: float = Field(default=0.01, ge=0.0)
