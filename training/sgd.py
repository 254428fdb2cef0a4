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
    """Update the parameters in place; return the gradient norm before clipping.

    No temporaries the size of a parameter: norms are computed per tensor, and the dense update
    is p <- p (1 - lr wd) - lr scale g, done in place.
    """
    grads = []
    for p in params:
        if p.grad is None:
            continue
        g = p.grad.coalesce() if p.grad.is_sparse else p.grad
        grads.append((p, g))
    if not grads:
        return 0.0
    norms = torch.stack([torch.linalg.vector_norm(g._values() if g.is_sparse else g) for _, g in grads])
    norm = float(torch.linalg.vector_norm(norms.double()))
    if not math.isfinite(norm):
        return norm
    scale = min(1.0, clip_norm / (norm + 1e-6))
    for p, g in grads:
        if g.is_sparse:
            rows = g._indices()[0]
            update = g._values() * scale
            if weight_decay:
                update += weight_decay * p[rows]
            p.index_add_(0, rows, update, alpha=-lr)
        else:
            if weight_decay:
                p.mul_(1.0 - lr * weight_decay)
            p.add_(g, alpha=-lr * scale)
    return norm
