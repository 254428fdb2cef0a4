"""Training losses. Each returns the loss summed over the valid positions it is given.

Conventions (DESIGN.md section 3): scores are natural logs; s(w|h) = o(h)_w - log_z is the
self-normalized log-probability; masked positions (target `<s>`) contribute nothing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def cross_entropy_loss(logits: torch.Tensor, targets: torch.Tensor, ignore_id: int) -> torch.Tensor:
    """Full-softmax cross-entropy: logits (N, V), targets (N,) -> summed loss (scalar)."""
    return F.cross_entropy(logits, targets, ignore_index=ignore_id, reduction="sum")


def nce_loss(
    target_scores: torch.Tensor,
    sample_scores: torch.Tensor,
    target_log_noise: torch.Tensor,
    sample_log_noise: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """NCE, paper 1 Eq. 12 with Eq. 10-11 written in log space; summed over valid positions.

    target_scores    s(y|h)       (N,)
    sample_scores    s(w|h)       (N, S)  the same S noise words for every position
    target_log_noise ln p_n(y)    (N,)
    sample_log_noise ln p_n(w)    (S,)
    mask             valid        (N,)    bool

    With nu = S: delta(w,h) = s(w|h) - ln(nu p_n(w)), p(C=1|w,h) = sigmoid(delta) (Eq. 10),
    p(C=0|w,h) = sigmoid(-delta) (Eq. 11), and per position
    L = -[log sigmoid(delta(y,h)) + sum_{w in S} log sigmoid(-delta(w,h))].
    """
    log_nu = math.log(sample_scores.shape[-1])
    delta_target = target_scores - (log_nu + target_log_noise)  # (N,)
    delta_samples = sample_scores - (log_nu + sample_log_noise)  # (N, S)
    per_position = -(F.logsigmoid(delta_target) + F.logsigmoid(-delta_samples).sum(-1))  # (N,)
    return torch.where(mask, per_position, torch.zeros_like(per_position)).sum()
