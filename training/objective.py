"""The per-batch training objective as a module.

forward(inputs, targets, state, samples, reference_features) -> (loss summed over valid
positions, LSTM state). Positions whose target is `<s>` (the step from one sentence's `</s>` to
the next `<s>`) are masked: that transition is deterministic and never scored at rescoring time.

Losses: `ce` (cross-entropy of a softmax or mixture-of-softmaxes model), `nce` (paper 1,
Eq. 12) and, with a frozen reference and gamma < 1, NCE+KLD (Eq. 21): the model's scores at the
target and noise words as in NCE, and the reference's at the same words, from features the
caller passes in (`training.reference`). Distillation from a frozen teacher (paper 2): `kl`,
`interp`, `tr` (Eq. 1-6, full distributions of student and teacher) and `nce-tr`, a
self-normalized student trained with NCE+KLD toward the teacher at gamma = R(y) / (1 + R(y)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rescorer.model import LstmLanguageModel, LSTMState
from training.config import DISTILLATION_LOSSES, SELF_NORMALIZED_LOSSES
from training.losses import (
    cross_entropy_loss,
    distillation_loss,
    nce_kld_loss,
    nce_loss,
    truncated_distillation_loss,
    trust_gamma,
)
from training.noise import UnigramNoise
from training.reference import FrozenReference
from training.regularization import Regularization, RegularizedFeatures
from training.teacher_cache import TruncatedTeacher


class TrainingObjective(nn.Module):
    """The trainer's objective. Two steps are methods so that bench/objective_variants.py can time
    other ways of computing them beside the trainer's (docs/RESULTS.md): `_cross_entropy` (a
    softmax model's CE) and `_picked_logits` (a softmax student's logits at the stored teachers'
    k words)."""

    def __init__(
        self, model: LstmLanguageModel, loss: str, bos_id: int,
        noise: UnigramNoise | None = None, sparse_grads: bool = True,
        reference: FrozenReference | None = None, gamma: float = 1.0,
        alpha: float = 0.5, trust_a: float = 0.1, regularization: Regularization | None = None,
    ) -> None:
        super().__init__()
        if loss in SELF_NORMALIZED_LOSSES and noise is None:
            raise ValueError(f"{loss} needs a noise distribution")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        if gamma < 1.0 and (reference is None or loss != "nce"):
            raise ValueError("gamma < 1 needs the nce loss and a reference model")
        if loss in DISTILLATION_LOSSES and reference is None:
            raise ValueError(f"loss {loss!r} needs a teacher")
        # gamma = 1 is plain NCE (Eq. 21 reduces to Eq. 12): the reference is not consulted
        self.reference = reference if (gamma < 1.0 or loss in DISTILLATION_LOSSES) else None
        self.gamma, self.alpha, self.trust_a = gamma, alpha, trust_a
        self.model = model
        self.loss = loss
        self.bos_id = bos_id
        self.noise = noise
        self.regularized = None
        if regularization is not None and regularization.active:
            self.regularized = RegularizedFeatures(model, regularization)
        # Sparse row gradients where only rows are touched: the input embedding always (unless
        # it is tied to a softmax output layer, whose gradient is dense), the output tables
        # under NCE. training.distributed averages them over ranks as sparse rows.
        self.sparse_output = sparse_grads and loss in SELF_NORMALIZED_LOSSES
        self.sparse_input = sparse_grads and (self.sparse_output or not model.config.tie_weights)
        model.embedding.sparse = self.sparse_input
        for module in model.output_modules:
            module.sparse = self.sparse_output

    def forward(
        self, inputs: torch.Tensor, targets: torch.Tensor, state: LSTMState | None,
        samples: torch.Tensor | None = None, reference_features: tuple[torch.Tensor, ...] | None = None,
    ) -> tuple[torch.Tensor, LSTMState]:
        """inputs, targets (B, T); samples (S,) noise words for NCE; reference_features, the frozen
        reference's (or teachers') features at the same positions, one (B, T, D_m) per member, or
        the teachers' stored top-k distributions there (training.teacher_cache)."""
        penalty = None
        if self.regularized is not None and self.model.training:
            features, state, penalty = self.regularized(inputs, state, sparse_embedding=self.sparse_input)
        else:
            features, state = self.model.features(inputs, state, sparse_embedding=self.sparse_input)
        # Under bf16 autocast the LSTM runs in bf16 and the losses in fp32. A softmax output layer's
        # product over the vocabulary stays in bf16 (its softmax is fp32: LstmLanguageModel.logits);
        # NCE's scores are fp32 throughout (they are compared with ln p_n(w) of about -10, where
        # bf16 is off by 0.04), and they cost only the target and noise rows.
        device = features.device.type
        mixed = torch.is_autocast_enabled(device)
        with torch.autocast(device, enabled=mixed and self.loss not in SELF_NORMALIZED_LOSSES):
            return self._loss(features.float(), targets, samples, reference_features, penalty), state

    def _loss(self, features: torch.Tensor, targets: torch.Tensor, samples: torch.Tensor | None,
              reference_features, penalty: torch.Tensor | None) -> torch.Tensor:
        features = features.reshape(-1, features.shape[-1])  # (N, D)
        targets = targets.reshape(-1)  # (N,)
        mask = targets != self.bos_id
        if self.reference is not None and reference_features is None:
            raise ValueError(f"loss {self.loss!r} needs the reference's features for the batch")
        if self.loss in SELF_NORMALIZED_LOSSES:
            loss = self._nce(features, targets, samples, reference_features, mask)
        elif self.loss in DISTILLATION_LOSSES and isinstance(reference_features, TruncatedTeacher) \
                and self.model.config.output_kind == "softmax":
            # the stored teachers and a softmax student: no (N, V) log-probabilities formed. The
            # logits are read for lse, and o at the k teacher words and at y are gathered from them
            # (their gradient added into lse's in place); see stored_teacher_logits.
            model, teacher = self.model, reference_features
            logits = model.logits(features).float()  # lse in fp32 under bf16, as the CE loss takes it
            with torch.autocast(features.device.type, enabled=False):
                picked = self._picked_logits(logits, features, teacher, targets)
                prior = teacher.prior_over(model.config.vocab_size, features)
                prior_logits = features @ (model.output_rows.T @ prior) + model.output_bias.weight[:, 0] @ prior
            loss = truncated_distillation_loss(logits, teacher, targets, mask, self.loss, self.alpha, self.trust_a,
                                               prior_logits=prior_logits, picked=picked)
        elif self.loss in DISTILLATION_LOSSES:
            student = self.model.log_probs(features)  # (N, V)
            teacher = reference_features if isinstance(reference_features, TruncatedTeacher) \
                else self.reference.log_probs(reference_features)  # (N, V), no gradient
            loss = distillation_loss(student, teacher, targets, mask, self.loss, self.alpha, self.trust_a)
        elif self.model.config.output_kind == "mos":
            loss = F.nll_loss(self.model.log_probs(features), targets, ignore_index=self.bos_id, reduction="sum")
        else:
            loss = self._cross_entropy(self.model.logits(features), targets)
        if penalty is not None:  # AR/TAR are per-element means; our loss is a sum over positions
            loss = loss + penalty.float() * mask.sum()
        return loss

    def _cross_entropy(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """A softmax model's cross-entropy summed over valid positions: lse(o) - o_y in one
        autograd function (losses.cross_entropy_loss; one (N, V) gradient buffer)."""
        return cross_entropy_loss(logits, targets, self.bos_id)

    def _picked_logits(self, logits: torch.Tensor, features: torch.Tensor, teacher: TruncatedTeacher,
                       targets: torch.Tensor) -> torch.Tensor | None:
        """The student's logits at the teachers' k words and at y, (N, k + 1); None: gathered from
        `logits` inside truncated_distillation_loss, with the log-sum-exp in one autograd function."""
        return None

    def _nce(self, features: torch.Tensor, targets: torch.Tensor, samples: torch.Tensor,
             reference_features: tuple[torch.Tensor, ...] | None, mask: torch.Tensor) -> torch.Tensor:
        # Cost O(N (S+1) D): only the rows of the targets and of the S samples are gathered.
        model, log_z = self.model, self.model.log_z
        target_scores = model.word_logits(features, targets, sparse=self.sparse_output) - log_z  # (N,)
        rows = F.embedding(samples, model.output_rows, sparse=self.sparse_output)  # (S, D)
        bias = F.embedding(samples, model.output_bias.weight, sparse=self.sparse_output)  # (S, 1)
        sample_scores = features @ rows.T + bias.T - log_z  # (N, S)
        target_log_noise, sample_log_noise = self.noise.log_probs[targets], self.noise.log_probs[samples]
        if self.reference is None:
            return nce_loss(target_scores, sample_scores, target_log_noise, sample_log_noise, mask)
        if isinstance(reference_features, TruncatedTeacher):  # the teachers' stored top k
            reference_target = reference_features.target
            reference_samples = reference_features.at(samples, self.model.config.vocab_size, targets)
        else:
            reference_target, reference_samples = self.reference.log_probs_at(
                reference_features, targets, samples)  # (N,), (N, S)
        # nce-tr: trust regularization as a per-position gamma = R(y) / (1 + R(y))
        gamma = trust_gamma(reference_target, self.trust_a) if self.loss == "nce-tr" else self.gamma
        # how often each target was drawn: the samples equal to y leave the partial expectation
        count = torch.bincount(samples, minlength=self.model.config.vocab_size)[targets]  # (N,)
        return nce_kld_loss(
            target_scores, sample_scores, target_log_noise, sample_log_noise,
            reference_target, reference_samples, count, gamma, mask,
        )
