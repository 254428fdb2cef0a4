"""AWD-LSTM regularization for teacher training (paper 2, section 2.1; Merity et al., 2018).

Training-time only: the artifact's model is the plain `LstmLanguageModel`, which scores as
always; this module runs its parameters differently while training:
- DropConnect on the hidden-to-hidden weights (`weight_drop`): one mask on W_hh per batch,
  shared by every time step;
- variational ("locked") dropout (`variational_dropout`): one mask per sequence, shared by every
  time step, on the LSTM's input, between its layers and on its output (it replaces the model's
  ordinary dropout where it is on);
- embedding dropout (`embedding_dropout`): whole words dropped from the batch, every occurrence;
- activation regularization AR (`activation_reg`, alpha: mean square of the dropped features
  that reach the output layer) and temporal activation regularization TAR
  (`temporal_activation_reg`, beta: mean square of the step-to-step change of the undropped
  last LSTM layer).
AR and TAR are means per element, as Merity et al. add them to a mean loss; our losses are sums
over positions, so the objective adds (AR + TAR) x the number of valid positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from rescorer.errors import ConfigError
from rescorer.model import LstmLanguageModel, LSTMState


@dataclass(frozen=True)
class Regularization:
    weight_drop: float = 0.0
    variational_dropout: float = 0.0
    embedding_dropout: float = 0.0
    activation_reg: float = 0.0
    temporal_activation_reg: float = 0.0

    def __post_init__(self) -> None:
        for name in ("weight_drop", "variational_dropout", "embedding_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        for name in ("activation_reg", "temporal_activation_reg"):
            if not getattr(self, name) >= 0.0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")

    @property
    def active(self) -> bool:
        return any(v > 0 for v in (self.weight_drop, self.variational_dropout, self.embedding_dropout,
                                   self.activation_reg, self.temporal_activation_reg))


def locked_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Dropout with one mask per sequence for every time step: x (B, T, E)."""
    if p == 0.0:
        return x
    mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1.0 - p) / (1.0 - p)  # (B, 1, E)
    return x * mask


class RegularizedFeatures(nn.Module):
    """The model's features with the regularizations above; gradients reach the model's own
    parameters (the LSTM layers run one by one through `functional_call`)."""

    def __init__(self, model: LstmLanguageModel, regularization: Regularization) -> None:
        super().__init__()
        self.model = model
        self.regularization = regularization
        config = model.config
        # parameter-free shells: one-layer LSTMs whose weights are passed in at each call
        self._shells = [nn.LSTM(config.embedding_dim if layer == 0 else config.hidden_dim, config.hidden_dim,
                                batch_first=True) for layer in range(config.num_layers)]

    def forward(self, ids: torch.Tensor, state: LSTMState | None, sparse_embedding: bool = False,
                ) -> tuple[torch.Tensor, LSTMState, torch.Tensor]:
        """ids (B, T) -> features (B, T, D), the LSTM state, and the AR + TAR penalty (scalar)."""
        model, reg = self.model, self.regularization
        x = F.embedding(ids, model.embedding.weight, sparse=sparse_embedding)  # (B, T, E)
        if reg.embedding_dropout > 0:
            keep = x.new_empty(model.config.vocab_size).bernoulli_(1.0 - reg.embedding_dropout)
            x = x * (keep[ids] / (1.0 - reg.embedding_dropout)).unsqueeze(-1)  # every occurrence of a word
        variational = reg.variational_dropout > 0
        x = locked_dropout(x, reg.variational_dropout) if variational else model.dropout(x)
        hs, cs = [], []
        for layer, shell in enumerate(self._shells):
            params = {f"{name}_l0": getattr(model.lstm, f"{name}_l{layer}")
                      for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
            params["weight_hh_l0"] = F.dropout(params["weight_hh_l0"], reg.weight_drop, training=True)
            layer_state = None if state is None else (state[0][layer : layer + 1], state[1][layer : layer + 1])
            raw, (h, c) = functional_call(shell, params, (x, layer_state))  # (B, T, H)
            hs.append(h)
            cs.append(c)
            last = layer == len(self._shells) - 1
            if variational:
                x = locked_dropout(raw, reg.variational_dropout)
            elif not last:  # as nn.LSTM: ordinary dropout between layers
                x = F.dropout(raw, model.config.dropout, training=True)
        if not variational:  # as model.features: one dropout after the projection (or the LSTM)
            x = model.dropout(model.projection(raw) if model.projection is not None else raw)
        elif model.projection is not None:
            x = model.projection(x)  # (B, T, P)
        penalty = x.new_zeros(())
        if reg.activation_reg > 0:
            penalty = penalty + reg.activation_reg * x.pow(2).mean()
        if reg.temporal_activation_reg > 0 and raw.shape[1] > 1:
            penalty = penalty + reg.temporal_activation_reg * (raw[:, 1:] - raw[:, :-1]).pow(2).mean()
        return x, (torch.cat(hs), torch.cat(cs)), penalty
