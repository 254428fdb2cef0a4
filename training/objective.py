"""The per-batch training objective as a module, so DistributedDataParallel can wrap it whole.

forward(inputs, targets, state, samples) -> (loss summed over valid positions, LSTM state).
Positions whose target is `<s>` (the step from one sentence's `</s>` to the next `<s>`) are
masked: that transition is deterministic and never scored at rescoring time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rescorer.model import LstmLanguageModel, LSTMState
from training.losses import cross_entropy_loss, nce_loss
from training.noise import UnigramNoise


class TrainingObjective(nn.Module):
    def __init__(
        self, model: LstmLanguageModel, loss: str, bos_id: int,
        noise: UnigramNoise | None = None, sparse_grads: bool = True,
    ) -> None:
        super().__init__()
        if loss == "nce" and noise is None:
            raise ValueError("NCE needs a noise distribution")
        self.model = model
        self.loss = loss
        self.bos_id = bos_id
        self.noise = noise
        # Sparse row gradients where only rows are touched: the input embedding always (unless
        # it is tied to a softmax output layer, whose gradient is dense), the output tables
        # under NCE. The modules' flags tell DistributedDataParallel which gradients are sparse.
        self.sparse_output = sparse_grads and loss == "nce"
        self.sparse_input = sparse_grads and (self.sparse_output or not model.config.tie_weights)
        model.embedding.sparse = self.sparse_input
        for module in model.output_modules:
            module.sparse = self.sparse_output

    def forward(
        self, inputs: torch.Tensor, targets: torch.Tensor, state: LSTMState | None,
        samples: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, LSTMState]:
        """inputs, targets (B, T); samples (S,) noise words for NCE."""
        features, state = self.model.features(inputs, state, sparse_embedding=self.sparse_input)
        features = features.reshape(-1, features.shape[-1])  # (N, D)
        targets = targets.reshape(-1)  # (N,)
        if self.loss == "ce":
            return cross_entropy_loss(self.model.logits(features), targets, self.bos_id), state
        return self._nce(features, targets, samples), state

    def _nce(self, features: torch.Tensor, targets: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
        # Cost O(N (S+1) D): only the rows of the targets and of the S samples are gathered.
        model, log_z = self.model, self.model.log_z
        target_scores = model.word_logits(features, targets, sparse=self.sparse_output) - log_z  # (N,)
        rows = F.embedding(samples, model.output_rows, sparse=self.sparse_output)  # (S, D)
        bias = F.embedding(samples, model.output_bias.weight, sparse=self.sparse_output)  # (S, 1)
        sample_scores = features @ rows.T + bias.T - log_z  # (N, S)
        return nce_loss(
            target_scores, sample_scores,
            self.noise.log_probs[targets], self.noise.log_probs[samples],
            mask=targets != self.bos_id,
        )
