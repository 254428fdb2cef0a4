"""The frozen reference model of NCE+KLD adaptation (paper 1, section 4).

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
from collections.abc import Iterator
from pathlib import Path

import torch

from rescorer.artifact import CONFIG_FILE, Artifact, ArtifactError, load_artifact
from rescorer.model import LstmLanguageModel, LSTMState
from training.batches import BpttBatches


class ReferenceError(ValueError):
    """A reference (or init) artifact that cannot be used for this run; names the file."""


def artifact_digest(path: str | Path) -> str:
    """sha256 of an artifact's config.json, which records the sha256 of its other files."""
    return hashlib.sha256((Path(path) / CONFIG_FILE).read_bytes()).hexdigest()


def load_reference(path: str | Path, vocab_sha256: str, role: str, device: torch.device | str = "cpu") -> Artifact:
    """Load an artifact as a frozen reference; its vocabulary must be the run's (`vocab_sha256`)."""
    try:
        artifact = load_artifact(path, device)
    except ArtifactError as e:
        raise ReferenceError(f"{role}: {e}") from None
    if artifact.vocab.sha256 != vocab_sha256:
        raise ReferenceError(
            f"{role} {path}: its vocabulary ({len(artifact.vocab)} words, sha256"
            f" {artifact.vocab.sha256[:12]}...) differs from the run's (sha256 {vocab_sha256[:12]}...);"
            " NCE+KLD compares the two models word by word, so both need the same words.txt"
        )
    if not artifact.model.is_self_normalized:
        raise ReferenceError(
            f"{role} {path}: output kind {artifact.model.config.output_kind!r}; the reference is"
            " evaluated only at the target and noise words, so it must be self_normalized"
        )
    artifact.model.eval()
    artifact.model.requires_grad_(False)
    return artifact


class FrozenReference:
    def __init__(self, model: LstmLanguageModel, temperature: float = 1.0) -> None:
        if not temperature > 0:
            raise ValueError(f"reference temperature must be positive, got {temperature}")
        if not model.is_self_normalized:
            raise ValueError("the reference must be a self_normalized model")
        self.model = model.eval().requires_grad_(False)
        self.temperature = temperature

    @torch.no_grad()
    def features(self, inputs: torch.Tensor, state: LSTMState | None) -> tuple[torch.Tensor, LSTMState]:
        """inputs (B, T) -> reference features (B, T, D) and its LSTM state."""
        return self.model.features(inputs, state)

    @torch.no_grad()
    def log_probs_at(
        self, features: torch.Tensor, targets: torch.Tensor, samples: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ln p_t(y|h) (N,) and ln p_t(w|h) for the S noise words (N, S); O(N (S+1) D).

        features (N, D) from `features`; targets (N,); samples (S,).
        """
        model = self.model
        scale = 1.0 / self.temperature
        target = (model.word_logits(features, targets) - model.log_z) * scale  # (N,)
        rows = model.output_rows[samples]  # (S, D)
        bias = (model.output_bias.weight[samples, 0] - model.log_z) * scale  # (S,)
        sample = torch.addmm(bias.unsqueeze(0), features, rows.T, alpha=scale)  # (N, S)
        return target, sample


class ReferenceFeatures:
    """The reference's features for each batch of a fixed layout, in the order it yields them."""

    def __init__(self, reference: FrozenReference, batches: BpttBatches, cached: bool,
                 device: torch.device | str = "cpu") -> None:
        self.reference, self.batches, self.device = reference, batches, device
        self.cache: list[torch.Tensor] | None = None
        if cached:
            # one pass over the layout; the same windows, in the same order, state carried
            self.cache = list(self._recompute())

    @staticmethod
    def cache_bytes(batches: BpttBatches, feature_dim: int) -> int:
        return batches.tokens_per_epoch * feature_dim * 4  # float32

    def _recompute(self) -> Iterator[torch.Tensor]:
        state = None
        for inputs, _ in self.batches:
            features, state = self.reference.features(inputs.to(self.device), state)
            yield features  # (B, T, D)

    def epoch(self) -> Iterator[torch.Tensor]:
        """Yield (B, T, D) per batch of `batches`, in order."""
        return iter(self.cache) if self.cache is not None else self._recompute()
