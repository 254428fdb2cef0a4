"""The training configuration: every hyper-parameter, its default and why.

The resolved config is stored in each checkpoint and in the artifact's provenance; the CLI's
kebab-case flags map one to one onto these snake_case fields.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Literal

LossKind = Literal["ce", "nce"]


@dataclass(frozen=True)
class TrainConfig:
    train_path: str
    dev_path: str
    out_dir: str
    # vocabulary
    vocab_path: str | None = None  # a Kaldi words.txt to use as is; else built from train_path
    vocab_size: int | None = None  # cap, counting <s> </s> <unk>; None = every word
    min_count: int = 1  # words seen fewer times map to <unk>
    unk_symbol: str = "<unk>"
    # model (see rescorer.model.ModelConfig)
    embedding_dim: int = 256
    hidden_dim: int = 256
    num_layers: int = 2
    dropout: float = 0.25  # paper 1
    projection_dim: int | None = None
    tie_weights: bool = False
    # loss
    loss: LossKind = "nce"
    noise_alpha: float = 0.75  # paper 1, Eq. 13
    noise_samples: int = 256  # S, shared by every position of a batch (paper 1); nu = S
    # adaptation (paper 1, section 4; `rescorer-train adapt`)
    init_path: str | None = None  # artifact to start from: its weights, vocabulary, architecture, log_z
    reference_path: str | None = None  # frozen self-normalized reference for NCE+KLD
    gamma: float = 1.0  # Eq. 8: weight of the data vs the reference; 1 = plain NCE fine-tuning
    reference_temperature: float = 1.0  # Eq. 22: p_t = exp(s_t / T); 1 = the reference as scored
    cache_reference_features: bool = True  # reference features computed once per run, not every step
    # optimisation
    batch_size: int = 64  # sequences per batch (paper 1: 128; 64 is faster on 2 cores)
    bptt: int = 20  # truncated BPTT length (paper 1)
    lr: float = 1.0  # SGD; the loss is summed over a window and averaged over sequences
    clip_norm: float = 15.0  # global gradient-norm clip (paper 1)
    weight_decay: float = 1e-6  # paper 1
    max_epochs: int = 25  # paper 1's budget
    anneal_threshold: float = 0.003  # start halving once dev improves by less than 0.3 %
    anneal_epochs: int = 5  # halving epochs before stopping (paper 1: "5 additional")
    sparse_grads: bool = True  # sparse embedding/output-row gradients (NCE touches few rows)
    seed: int = 1
    device: str = "auto"  # auto = cuda when present, else cpu
    eval_max_tokens: int = 8192  # padded tokens per dev-evaluation batch

    def __post_init__(self) -> None:
        if self.loss not in ("ce", "nce"):
            raise ValueError(f"loss must be 'ce' or 'nce', got {self.loss!r}")
        checks = {
            "noise_samples": self.noise_samples >= 1, "batch_size": self.batch_size >= 1,
            "bptt": self.bptt >= 1, "lr": self.lr > 0, "clip_norm": self.clip_norm > 0,
            "weight_decay": self.weight_decay >= 0, "max_epochs": self.max_epochs >= 1,
            "anneal_epochs": self.anneal_epochs >= 0, "min_count": self.min_count >= 1,
            "gamma": 0.0 <= self.gamma <= 1.0, "reference_temperature": self.reference_temperature > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"invalid {name}: {getattr(self, name)!r}")
        if self.gamma < 1.0 and not self.reference_path:
            raise ValueError(f"gamma {self.gamma} < 1 needs a reference model (reference_path)")
        if (self.reference_path or self.gamma < 1.0) and self.loss != "nce":
            raise ValueError("NCE+KLD adaptation needs loss 'nce'")
        if self.init_path and self.vocab_path:
            raise ValueError("init_path brings its own vocabulary; do not also give vocab_path")
        if self.reference_path and not self.init_path:
            raise ValueError("a reference model needs init_path (the vocabulary comes from the init artifact)")

    @property
    def uses_reference(self) -> bool:
        """NCE+KLD: a reference that the loss reads (gamma = 1 is plain NCE and never reads it)."""
        return self.reference_path is not None and self.gamma < 1.0

    @property
    def output_kind(self) -> str:
        return "self_normalized" if self.loss == "nce" else "softmax"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
