"""The NCE noise distribution p_n(w) ∝ count(w)^alpha (paper 1, Eq. 13)."""

from __future__ import annotations

import numpy as np
import torch

from rescorer.errors import ConfigError


class UnigramNoise:
    def __init__(self, counts: np.ndarray, alpha: float = 0.75) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"noise alpha must be in [0, 1], got {alpha}")
        counts_t = torch.as_tensor(np.asarray(counts), dtype=torch.float64)
        if counts_t.sum() <= 0:
            raise ConfigError("noise distribution needs at least one word with a positive count")
        weights = torch.where(counts_t > 0, counts_t.pow(alpha), torch.zeros_like(counts_t))
        self.alpha = alpha
        self.probs = (weights / weights.sum()).float()  # (V,)
        # log p_n(w); -inf for words never seen (they are never sampled nor trained as targets)
        self.log_probs = torch.log(self.probs)  # (V,)

    def to(self, device: torch.device | str) -> UnigramNoise:
        """Move the log-probabilities (used in the loss); sampling stays on the CPU generator."""
        self.log_probs = self.log_probs.to(device)
        return self

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """S word ids drawn with replacement, shared by every position of a batch: (S,)."""
        return torch.multinomial(self.probs, num_samples, replacement=True, generator=generator)
