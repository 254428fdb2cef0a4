"""Word-level LSTM language model with a self-normalized or softmax output layer.

    ids (B, T) -> embedding (B, T, E) -> LSTM x N (B, T, H) -> [projection (B, T, P)]
        -> output layer o(h)_w = u_w . h + b_w

Output kinds (docs/ARCHITECTURE.md, section 3):
- `self_normalized`: log p(w|h) := o(h)_w - log_z with a constant `log_z` (initialised to ln V).
  Scoring a word touches one row u_w: O(H) per token, never O(H V).
- `softmax`: log p(w|h) = log_softmax(o(h))_w, the cross-entropy baseline.
- `mos`: a mixture of K softmaxes (the high-rank teachers of paper 2, section 2.1):
  p(w|h) = sum_k pi_k(h) softmax(U (W_k h) + b)_w with pi(h) = softmax(W_pi h). Each expert
  reads a linear projection W_k h of the (bottleneck) features. Unlike Yang et al.'s MoS there
  is no tanh on W_k h: then one expert with W_1 = I is exactly the softmax model (tested), and
  the mixture over K > 1 is still not a single softmax of any logits. Costs K full softmaxes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from rescorer.errors import ConfigError

OutputKind = Literal["self_normalized", "softmax", "mos"]
OUTPUT_KINDS: tuple[str, ...] = ("self_normalized", "softmax", "mos")
LSTMState = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (num_layers, B, H)
LOGIT_CHUNK = 2048  # positions per full-vocabulary block (bounds memory at large V)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture; stored in the artifact's config.json so a model rebuilds itself."""

    vocab_size: int
    embedding_dim: int = 256  # paper 1 uses 512 at V = 58k; 256 fits PTB on 2 cores
    hidden_dim: int = 256  # paper 1: 1024
    num_layers: int = 2  # paper 1: 2
    dropout: float = 0.25  # feed-forward dropout (paper 1: 0.25); never on recurrent links
    projection_dim: int | None = None  # linear bottleneck before the output layer; None = none
    tie_weights: bool = False  # output rows = input embedding (needs feature dim == embedding)
    output_kind: OutputKind = "self_normalized"
    experts: int = 1  # K, mixture-of-softmaxes components (output_kind "mos" only)

    def __post_init__(self) -> None:
        if self.output_kind not in OUTPUT_KINDS:
            raise ConfigError(f"output_kind must be one of {OUTPUT_KINDS}, got {self.output_kind!r}")
        if not isinstance(self.experts, int) or self.experts < 1 or (self.experts > 1 and self.output_kind != "mos"):
            raise ConfigError(f"experts must be 1, or more with output_kind 'mos'; got {self.experts!r}")
        for name in ("vocab_size", "embedding_dim", "hidden_dim", "num_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.tie_weights and self.feature_dim != self.embedding_dim:
            raise ConfigError(
                f"tie_weights needs the output feature size ({self.feature_dim}) to equal"
                f" embedding_dim ({self.embedding_dim}); set projection_dim={self.embedding_dim}"
            )

    @property
    def feature_dim(self) -> int:
        """Size of the vector h that the output layer dots with u_w."""
        return self.projection_dim or self.hidden_dim

    def to_dict(self) -> dict:
        return asdict(self)


class LstmLanguageModel(nn.Module):
    def __init__(self, config: ModelConfig, log_z: float | None = None) -> None:
        super().__init__()
        self.config = config
        V, E, H = config.vocab_size, config.embedding_dim, config.hidden_dim
        self.embedding = nn.Embedding(V, E)
        self.lstm = nn.LSTM(
            E, H, num_layers=config.num_layers, batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.projection = nn.Linear(H, config.projection_dim) if config.projection_dim else None
        self.dropout = nn.Dropout(config.dropout)
        # Output rows u_w and biases b_w are embedding tables: scoring gathers rows, and
        # NCE training can give them sparse row gradients (a module's `sparse` flag).
        self.output_embedding = None if config.tie_weights else nn.Embedding(V, config.feature_dim)
        self.output_bias = nn.Embedding(V, 1)
        if config.output_kind == "mos":
            D, K = config.feature_dim, config.experts
            self.prior = nn.Linear(D, K, bias=False)  # pi(h) = softmax(W_pi h)
            self.expert_projection = nn.Linear(D, K * D, bias=False)  # W_1 .. W_K stacked
        if log_z is None:
            log_z = math.log(V) if config.output_kind == "self_normalized" else 0.0
        # A constant, not trained (paper 1, Eq. 14); re-centering moves it.
        self.register_buffer("log_z", torch.tensor(float(log_z)), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Small uniform init: N(0, 1) embeddings produce denormals in the LSTM backward,
        # which slow CPU arithmetic down (docs/ARCHITECTURE.md, section 5).
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        if self.output_embedding is not None:
            nn.init.uniform_(self.output_embedding.weight, -0.1, 0.1)
        nn.init.zeros_(self.output_bias.weight)

    @property
    def output_rows(self) -> torch.Tensor:
        """The output matrix U, (V, D): one row u_w per word."""
        return self.embedding.weight if self.output_embedding is None else self.output_embedding.weight

    @property
    def output_modules(self) -> list[nn.Embedding]:
        """The tables gathered when words are scored: U (unless tied to the input) and b."""
        return [m for m in (self.output_embedding, self.output_bias) if m is not None]

    @property
    def is_self_normalized(self) -> bool:
        return self.config.output_kind == "self_normalized"

    def features(
        self, ids: torch.Tensor, state: LSTMState | None = None, sparse_embedding: bool = False
    ) -> tuple[torch.Tensor, LSTMState]:
        """ids (B, T) -> features h (B, T, D) and the LSTM state after the last step."""
        x = F.embedding(ids, self.embedding.weight, sparse=sparse_embedding)  # (B, T, E)
        x, state = self.lstm(self.dropout(x), state)  # (B, T, H)
        if self.projection is not None:
            x = self.projection(x)  # (B, T, P)
        # the output layer's dtype (fp32 when only the recurrent part runs in reduced precision)
        return self.dropout(x).to(self.output_bias.weight.dtype), state

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """o(h) over the whole vocabulary: (..., D) -> (..., V). O(D V) per position."""
        # rows held in reduced precision (rescorer.precision) are read back in the features' dtype;
        # under bf16 autocast (mixed-precision training) the product is bf16 and read back as fp32,
        # so that the softmax over it is fp32
        out = F.linear(features, self.output_rows.to(features.dtype), self.output_bias.weight.squeeze(1))
        return out.float() if out.dtype == torch.bfloat16 and features.dtype == torch.float32 else out

    def word_logits(
        self, features: torch.Tensor, word_ids: torch.Tensor, sparse: bool = False
    ) -> torch.Tensor:
        """o(h)_w for one word per position: features (..., D), word_ids (...) -> (...).

        Gathers only the rows u_w being scored; `sparse` makes their gradient a sparse tensor
        so that an optimizer step touches only those rows.
        """
        rows = F.embedding(word_ids, self.output_rows, sparse=sparse).to(features.dtype)  # (..., D)
        bias = F.embedding(word_ids, self.output_bias.weight, sparse=sparse).squeeze(-1)
        return (features * rows).sum(-1) + bias

    def log_probs(self, features: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """Normalized log p(.|h) over the vocabulary: (..., D) -> (..., V). O(K D V) per position.

        softmax and self_normalized: log_softmax(o(h) / T); mos: log sum_k pi_k softmax_k, with
        each expert's logits divided by T (the prior is not tempered).
        """
        if self.config.output_kind != "mos":
            return torch.log_softmax(self.logits(features) / temperature, dim=-1)
        K, D = self.config.experts, self.config.feature_dim
        log_prior = torch.log_softmax(self.prior(features), dim=-1)  # (..., K)
        expert_features = self.expert_projection(features).unflatten(-1, (K, D))  # (..., K, D)
        expert_log_probs = torch.log_softmax(self.logits(expert_features) / temperature, dim=-1)  # (..., K, V)
        return torch.logsumexp(log_prior.unsqueeze(-1) + expert_log_probs, dim=-2)  # (..., V)

    def log_prob_of(self, features: torch.Tensor, word_ids: torch.Tensor) -> torch.Tensor:
        """log p(w|h) as the model defines it: features (..., D), word_ids (...) -> (...).

        Self-normalized: o(h)_w - log_z (no softmax). Softmax and mos: full normalization.
        """
        if self.is_self_normalized:
            return self.word_logits(features, word_ids) - self.log_z
        return self.log_probs(features).gather(-1, word_ids.unsqueeze(-1)).squeeze(-1)

    @property
    def device(self) -> torch.device:
        return self.embedding.weight.device


def token_log_probs(model: LstmLanguageModel, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target | h) for N positions: features (N, D), targets (N,) -> (N,).

    Self-normalized: one gathered row per position. Softmax and mos: full normalization, in chunks.
    """
    if model.is_self_normalized:
        return model.log_prob_of(features, targets)
    out = torch.empty(len(targets), dtype=features.dtype, device=features.device)
    chunk = max(LOGIT_CHUNK // model.config.experts, 1)  # a mos holds K (n, V) blocks
    for start in range(0, len(targets), chunk):
        stop = start + chunk
        out[start:stop] = model.log_prob_of(features[start:stop], targets[start:stop])
    return out


def detach_state(state: LSTMState) -> LSTMState:
    """Cut the graph between BPTT windows while carrying the values on."""
    return (state[0].detach(), state[1].detach())
