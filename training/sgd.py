"""Plain SGD with global gradient-norm clipping and weight decay, for dense and sparse grads.

torch.optim.SGD rejects weight decay on sparse gradients and clip_grad_norm_ rejects sparse
tensors, so this short step does both: it computes the global norm over dense and sparse
gradients, scales them to at most `clip_norm`, and updates only the rows a sparse gradient
touches. Weight decay on a sparse parameter applies to those rows only (lazy decay: rows
that are never sampled are not shrunk), the usual choice for sampled output layers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


@torch.no_grad()
def sgd_step(
    params: Iterable[torch.nn.Parameter], lr: float, clip_norm: float, weight_decay: float
) -> float:
    """Update the parameters in place; return the gradient norm before clipping."""
    grads = []
    for p in params:
        if p.grad is None:
            continue
        g = p.grad.coalesce() if p.grad.is_sparse else p.grad
        grads.append((p, g))
    squares = [
        (g._values() if g.is_sparse else g).double().pow(2).sum() for _, g in grads
    ]
    norm = math.sqrt(float(torch.stack(squares).sum())) if squares else 0.0
    if not math.isfinite(norm):
        return norm
    scale = min(1.0, clip_norm / (norm + 1e-6))
    for p, g in grads:
        if g.is_sparse:
            rows = g._indices()[0]
            update = g._values() * scale + weight_decay * p[rows]
            p.index_add_(0, rows, update, alpha=-lr)
        else:
            p.add_(g * scale + weight_decay * p, alpha=-lr)
    return norm
