"""Other ways of computing two of the trainer's steps, which bench/distill_throughput.py times
beside the trainer's own (`training.objective.TrainingObjective`); not used in training.

- `LogSoftmaxCrossEntropy`: a softmax model's cross-entropy through F.cross_entropy (log-softmax,
  then NLL), the step a PyTorch user would write, against the trainer's lse(o) - o_y.
- `AutogradPickedLogits`: the student's logits at the stored teachers' k words gathered as an
  autograd op of its own, beside the log-sum-exp (three (N, V) gradient buffers instead of one).
- `RowsPickedLogits`: the same logits from those words' output rows times the features (an
  (N, k + 1, D) product, its backward scattered).
Each gives the trainer's loss and gradient (tests/test_distill.py, tests/test_losses.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.objective import TrainingObjective
from training.teacher_cache import TruncatedTeacher


def log_softmax_cross_entropy_loss(logits: torch.Tensor, targets: torch.Tensor, ignore_id: int) -> torch.Tensor:
    """The cross-entropy summed over positions whose target is not `ignore_id`, via F.cross_entropy."""
    return F.cross_entropy(logits, targets, ignore_index=ignore_id, reduction="sum")


class LogSoftmaxCrossEntropy(TrainingObjective):
    def _cross_entropy(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return log_softmax_cross_entropy_loss(logits, targets, self.bos_id)


def _teacher_words(teacher: TruncatedTeacher, targets: torch.Tensor) -> torch.Tensor:
    return torch.cat([teacher.indices, targets.unsqueeze(1)], dim=1)  # (N, k + 1)


class AutogradPickedLogits(TrainingObjective):
    def _picked_logits(self, logits, features, teacher, targets):
        return logits.gather(1, _teacher_words(teacher, targets))


class RowsPickedLogits(TrainingObjective):
    def _picked_logits(self, logits, features, teacher, targets):
        words = _teacher_words(teacher, targets)
        rows = F.embedding(words, self.model.output_rows)  # (N, k + 1, D)
        return torch.einsum("nd,nkd->nk", features, rows) + self.model.output_bias.weight[words, 0]


VARIANTS = {"gather": TrainingObjective, "autograd": AutogradPickedLogits, "rows": RowsPickedLogits,
            "lse": TrainingObjective, "log_softmax": LogSoftmaxCrossEntropy}
