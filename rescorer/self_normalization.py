"""The exact log Z(h) of a self-normalized model at live positions, for drift telemetry.

log Z(h) = logsumexp_w (o(h)_w - log_z): 0 where the model is exactly normalized. This costs a
full pass over the output layer, so a service measures it on a small sample only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from rescorer.artifact import Artifact


@torch.inference_mode()
def log_z_of_sentence(artifact: Artifact, words: Sequence[str]) -> np.ndarray:
    """log Z(h) at every position of one sentence (its tokens + </s>): (n+1,) float64."""
    model, vocab = artifact.model, artifact.vocab
    ids = torch.tensor([[vocab.bos_id, *artifact.token_ids(words)]], device=model.device)
    features, _ = model.features(ids)  # (1, T, D)
    logits = model.logits(features[0]).double()  # (T, V)
    return (torch.logsumexp(logits, dim=-1) - float(model.log_z)).cpu().numpy()
