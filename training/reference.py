"""The frozen reference of NCE+KLD adaptation (paper 1, section 4) and of distillation (paper 2).

One class serves both: a single self-normalized artifact for adaptation, an ensemble of
teachers (the mean of their probabilities) for distillation.

The reference is read, never trained: its parameters have requires_grad False, it runs in
eval mode (no dropout) under no_grad, and it is evaluated only at the target and the S noise
words of each position (`log_probs_at`), never over the vocabulary. So it must be
self-normalized: log p_t(w|h) = s_t(w|h) = o_t(h)_w - log_z_t, read from one output row.

Temperature (Eq. 22): p_t(w|h) = exp(s_t(w|h) / T). We divide the self-normalized score
(log_z included) by T, so T = 1 is the reference as the rescorer scores it.

Its LSTM is the expensive part, and it is frozen: on a fixed batch layout (the truncated-BPTT
columns do not change from epoch to epoch) the features it produces for every training position
are the same in every epoch. `ReferenceFeatures` computes them once per run and slices them
per batch (`cached`), or runs the reference beside the model at every step (`recomputed`, for
corpora whose features would not fit in memory). Both give the same numbers (tested).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from rescorer.artifact import CONFIG_FILE, Artifact, ArtifactError, load_artifact
from rescorer.bounded_read import read_bytes_bounded
from rescorer.errors import ConfigError, InputError
from rescorer.model import LstmLanguageModel
from training.batches import BpttBatches


class ReferenceError(InputError):
    """A reference (or init) artifact that cannot be used for this run; names the file."""


def artifact_digest(path: str | Path) -> str:
    """sha256 of an artifact's config.json, which records the sha256 of its other files."""
    return hashlib.sha256(read_bytes_bounded(Path(path) / CONFIG_FILE)).hexdigest()


def load_reference(path: str | Path, vocab_sha256: str | None, role: str, device: torch.device | str = "cpu",
                   self_normalized: bool = True) -> Artifact:
    """Load an artifact as a frozen reference; its vocabulary must be the run's (`vocab_sha256`,
    None: any). `self_normalized`: refuse other output kinds (the NCE+KLD reference of `adapt`)."""
    try:
        artifact = load_artifact(path, device)
    except ArtifactError as e:
        raise ReferenceError(f"{role}: {e}") from None
    if vocab_sha256 is not None and artifact.vocab.sha256 != vocab_sha256:
        raise ReferenceError(
            f"{role} {path}: its vocabulary ({len(artifact.vocab)} words, sha256"
            f" {artifact.vocab.sha256[:12]}...) differs from the run's (sha256 {vocab_sha256[:12]}...);"
            " the losses compare the models word by word, so all need the same words.txt"
        )
    if self_normalized and not artifact.model.is_self_normalized:
        raise ReferenceError(
            f"{role} {path}: output kind {artifact.model.config.output_kind!r}; the reference is"
            " evaluated only at the target and noise words, so it must be self_normalized"
        )
    artifact.model.eval()
    artifact.model.requires_grad_(False)
    return artifact


class FrozenReference:
    """One frozen model (the NCE+KLD reference) or an ensemble (the distillation teacher, whose
    probabilities are the mean of its members', paper 2). Features are a tuple, one per member."""

    def __init__(self, models: Sequence[LstmLanguageModel], temperature: float = 1.0) -> None:
        if not temperature > 0:
            raise ConfigError(f"reference temperature must be positive, got {temperature}")
        if not models:
            raise ValueError("a reference needs at least one model")
        if len({m.config.vocab_size for m in models}) > 1:
            raise ValueError("the members of a reference ensemble must share one vocabulary")
        self.models = [m.eval().requires_grad_(False) for m in models]
        self.temperature = temperature
        self.is_self_normalized = all(m.is_self_normalized for m in models)

    @property
    def feature_dims(self) -> list[int]:
        return [m.config.feature_dim for m in self.models]

    @torch.no_grad()
    def features(self, inputs: torch.Tensor, state: tuple | None) -> tuple[tuple[torch.Tensor, ...], tuple]:
        """inputs (B, T) -> one (B, T, D_m) per member, and the members' LSTM states."""
        states = state or (None,) * len(self.models)
        outputs = [m.features(inputs, s) for m, s in zip(self.models, states, strict=True)]
        return tuple(f for f, _ in outputs), tuple(s for _, s in outputs)

    def _mean(self, member_log_probs: list[torch.Tensor]) -> torch.Tensor:
        """log of the mean of the members' probabilities."""
        if len(member_log_probs) == 1:
            return member_log_probs[0]
        return torch.logsumexp(torch.stack(member_log_probs), dim=0) - math.log(len(member_log_probs))

    @torch.no_grad()
    def log_probs_at(
        self, features: tuple[torch.Tensor, ...], targets: torch.Tensor, samples: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ln p_t(y|h) (N,) and ln p_t(w|h) for the S noise words (N, S).

        features: one (B, T, D_m) per member; targets (N,) with N = B T; samples (S,).
        A self-normalized member is read at those words only, O(N (S+1) D); a softmax or mos
        member needs its full normalization, O(N K V D).
        """
        scale = 1.0 / self.temperature
        at_targets, at_samples = [], []
        for model, member_features in zip(self.models, features, strict=True):
            f = member_features.reshape(-1, member_features.shape[-1])  # (N, D)
            if model.is_self_normalized:
                at_targets.append((model.word_logits(f, targets) - model.log_z) * scale)  # (N,)
                rows = model.output_rows[samples]  # (S, D)
                bias = (model.output_bias.weight[samples, 0] - model.log_z) * scale  # (S,)
                at_samples.append(torch.addmm(bias.unsqueeze(0), f, rows.T, alpha=scale))  # (N, S)
            else:
                log_p = model.log_probs(f, self.temperature)  # (N, V)
                at_targets.append(log_p.gather(1, targets.unsqueeze(1)).squeeze(1))
                at_samples.append(log_p[:, samples])
        return self._mean(at_targets), self._mean(at_samples)

    @torch.no_grad()
    def log_probs(self, features: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Normalized ln Q(.|h) over the vocabulary, (N, V): each member's full distribution
        (softmax over o/T; a self-normalized member is normalized exactly here), then averaged."""
        return self._mean([m.log_probs(f.reshape(-1, f.shape[-1]), self.temperature)
                           for m, f in zip(self.models, features, strict=True)])


class ReferenceFeatures:
    """The reference's features for each batch of a fixed layout, in the order it yields them."""

    def __init__(self, reference: FrozenReference, batches: BpttBatches, cached: bool,
                 device: torch.device | str = "cpu") -> None:
        self.reference, self.batches, self.device = reference, batches, device
        self.cache: list[tuple[torch.Tensor, ...]] | None = None
        if cached:
            # one pass over the layout; the same windows, in the same order, state carried
            self.cache = list(self._recompute())

    @staticmethod
    def cache_bytes(batches: BpttBatches, feature_dims: Sequence[int]) -> int:
        return batches.tokens_per_epoch * sum(feature_dims) * 4  # float32

    def _recompute(self) -> Iterator[tuple[torch.Tensor, ...]]:
        state = None
        for inputs, _ in self.batches:
            features, state = self.reference.features(inputs.to(self.device), state)
            yield features  # one (B, T, D_m) per member

    def epoch(self) -> Iterator[tuple[torch.Tensor, ...]]:
        """Yield the members' (B, T, D_m) features per batch of `batches`, in order."""
        return iter(self.cache) if self.cache is not None else self._recompute()
