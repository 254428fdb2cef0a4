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


BLOCK_ELEMENTS = 1 << 22  # resampled indices held at once: memory stays flat however many utterances


def paired_bootstrap(errors_base: np.ndarray, errors_new: np.ndarray, ref_words: np.ndarray,
                     resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> BootstrapInterval:
    """Resample utterances with replacement; the interval of the WER difference (Koehn-style
    paired bootstrap on utterances). Resamples are drawn in blocks of rows (the same random
    stream as one draw), so 100k utterances x 1000 resamples never hold more than
    BLOCK_ELEMENTS indices."""
    n = len(ref_words)
    rng = np.random.default_rng(seed)
    difference = np.asarray(errors_new, dtype=np.int64) - np.asarray(errors_base, dtype=np.int64)
    words_of = np.asarray(ref_words, dtype=np.int64)
    rows = max(1, BLOCK_ELEMENTS // max(n, 1))
    deltas = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, rows):
        picks = rng.integers(0, n, size=(min(rows, resamples - start), n))
        deltas[start:start + len(picks)] = difference[picks].sum(1) / np.maximum(words_of[picks].sum(1), 1)
    alpha = (1 - confidence) / 2
    return BootstrapInterval(
        delta=float((errors_new.sum() - errors_base.sum()) / max(ref_words.sum(), 1)),
        low=float(np.quantile(deltas, alpha)), high=float(np.quantile(deltas, 1 - alpha)),
        confidence=confidence, resamples=resamples, share_improved=float((deltas < 0).mean()),
    )
