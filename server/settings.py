"""Service settings: flags of `rescorer-server` and `RESCORER_*` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, create_model, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rescorer.combination import MAX_WEIGHT, Weights

# the default combination weights (a request, then the artifact's tuned weights, take precedence),
# made from the library's one definition (rescorer.combination.Weights)
_WeightSettings = create_model(
    "_WeightSettings", __base__=BaseSettings,
    **{name: (float, Field(default, ge=-MAX_WEIGHT, le=MAX_WEIGHT, allow_inf_nan=False, description=f"default {help}"))
       for name, (default, help) in Weights.describe().items()},
)


class Settings(_WeightSettings):
    # every number finite: an infinite timeout or share passes ">= 0" and fails later, far from its flag
    model_config = SettingsConfigDict(env_prefix="RESCORER_", extra="forbid", protected_namespaces=(),
                                      allow_inf_nan=False)

    model_dir: Path = Field(description="an artifact, or a directory whose subdirectories are artifacts")
    host: str = Field("127.0.0.1", description="address to bind: loopback unless told otherwise")
    port: int = Field(8000, ge=0, le=65535, description="TCP port")
    token: str | None = Field(None, description="bearer token required on every /v1 route (default: none"
                                                " required; an empty token is refused)")
    device: str = Field("auto", description="auto (cuda when present, else cpu), cpu or cuda")
    precision: str = Field("auto", description="arithmetic of the LSTM and storage of the output rows: auto (bf16"
                                               " where the device has it in hardware, else fp32: bf16 met the accuracy"
                                               " goals on every list measured, docs/RESULTS.md), fp32, bf16 or fp16"
                                               " (CUDA)")
    processes: int | None = Field(None, ge=1, le=256, description="serving processes behind the one port, each with"
                                  " its own batcher (default: one per core on CPU; one on CUDA, where more are"
                                  " refused; docs/SERVER.md)")
    scoring_workers: int | None = Field(None, ge=1, description="scoring threads per process, each scoring its own"
                                                                " batch (default: one per core of the process's share"
                                                                " on CPU, one on CUDA)")
    torch_threads: int | None = Field(None, ge=1, description="torch intra-op threads per worker"
                                                              " (default: the process's share of the cores // workers"
                                                              " on CPU)")
    # limits (docs/SERVER.md, "Resource bounds")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1, description="request body size; larger: 413")
    max_utterances: int = Field(256, ge=1, description="utterances per /v1/rescore request")
    max_hyps_per_utterance: int = Field(1000, ge=1, description="hypotheses per utterance")
    max_words_per_hyp: int = Field(200, ge=1, description="words per hypothesis, sentence or kaldi line")
    max_words_per_ref: int = Field(1000, ge=1, description="words per reference")
    max_alignment_cells: int = Field(4_000_000, ge=1, description="per request, the sclite alignments behind the"
                                     " WER fields: sum over hypotheses of |ref| x |hyp| (each at least 1)"
                                     " (pure Python; a request at the default limits is timed by"
                                     " bench/request_at_limits.py)")
    max_sentences: int = Field(4096, ge=1, description="sentences per /v1/score request, lines per /v1/score/kaldi")
    # dynamic batching
    batch_tokens: int = Field(8192, ge=1, description="a batch is scored once it holds this many tokens ...")
    max_delay_ms: float | None = Field(None, ge=0.0, le=60_000.0, description="... or once its oldest request waited this"
                                       " long (default: 0 on CPU, where batching gains little, 5 on CUDA)")
    max_batch_requests: int | None = Field(None, ge=1, description="requests per batch (default: measured per model"
                                           " when it loads: no limit where one call of many requests is faster on"
                                           " this device, else 1; 1 = no batching across requests)")
    queue_tokens: int = Field(200_000, ge=1, description="tokens waiting beyond this: 503 with Retry-After")
    request_timeout_s: float = Field(30.0, gt=0.0, le=86_400.0, description="a request not answered by then: 504 (at most 86400)")
    request_read_timeout_s: float = Field(10.0, gt=0.0, le=86_400.0, description="a connection whose request (headers and"
                                          " body) has not arrived whole by then is closed (slow clients; at most 86400)")
    max_connections: int = Field(512, ge=1, description="open connections (or requests in progress) beyond"
                                 " this are answered 503")
    access_log: bool = Field(False, description="one log line per request (uvicorn's access log); off by default:"
                             " /metrics counts requests by route and status, and formatting and writing a line per"
                             " request is work on the event loop")
    telemetry_share: float = Field(0.01, ge=0.0, le=1.0, description="self-normalization telemetry: the share of scoring"
                                   " time spent on exact log Z(h) at live positions (0 = off, at most 1)")

    @field_validator("host")
    @classmethod
    def _host_not_blank(cls, value: str) -> str:
        # an empty address binds every interface: RESCORER_HOST= or --host "$UNSET" must not open the
        # service to the network; every interface is for whoever names it (0.0.0.0, ::)
        if not value.strip():
            raise ValueError("an empty host would bind every interface; give 127.0.0.1 (the default), or"
                             " 0.0.0.0 to serve on every interface")
        return value.strip()

    @field_validator("model_dir", mode="before")
    @classmethod
    def _model_dir_not_blank(cls, value):
        # Path("") is the working directory: an unset variable would serve whatever artifacts lie there
        if isinstance(value, str) and not value.strip():
            raise ValueError("an empty path; expected an artifact, or a directory whose subdirectories are artifacts")
        return value

    @field_validator("token")
    @classmethod
    def _token_not_blank(cls, value: str | None) -> str | None:
        # RESCORER_TOKEN= (empty) would otherwise let "Authorization: Bearer" with no token in
        if value is None:
            return None
        # a Secret made from a file ends with a newline no client sends: whitespace at either end
        # is not part of the token
        value = value.strip()
        if not value:
            raise ValueError("an empty token would accept an empty credential; unset it or give a token")
        if not all("!" <= c <= "~" for c in value):
            raise ValueError("a token must be printable ASCII without spaces (what an Authorization header can"
                             " carry); found a space, control or non-ASCII character inside it")
        return value
