"""A paired bootstrap confidence interval for a change in WER (Koehn-style, over utterances)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class BootstrapInterval:
    delta: float  # WER(new) - WER(base), a fraction; negative is an improvement
    low: float
    high: float
    confidence: float
    resamples: int
    share_improved: float  # share of resamples in which the new system has fewer errors

    def to_dict(self) -> dict:
        return asdict(self)


def paired_bootstrap(errors_base: np.ndarray, errors_new: np.ndarray, ref_words: np.ndarray,
                     resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> BootstrapInterval:
    """Resample utterances with replacement; the interval of the WER difference (Koehn-style
    paired bootstrap on utterances)."""
    n = len(ref_words)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(resamples, n))
    words = ref_words[picks].sum(1)
    deltas = (errors_new[picks].sum(1) - errors_base[picks].sum(1)) / np.maximum(words, 1)
    alpha = (1 - confidence) / 2
    return BootstrapInterval(
        delta=float((errors_new.sum() - errors_base.sum()) / max(ref_words.sum(), 1)),
        low=float(np.quantile(deltas, alpha)), high=float(np.quantile(deltas, 1 - alpha)),
        confidence=confidence, resamples=resamples, share_improved=float((deltas < 0).mean()),
    )
