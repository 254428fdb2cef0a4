"""Word error rates: corpus WER with its parts, per-hypothesis error counts (for choosing,
tuning and the oracle), and a paired bootstrap confidence interval for a change.

WER = (substitutions + deletions + insertions) / reference words, over the whole corpus.
Texts are split into words by jiwer. Every error count, the corpus figures that reports print
and the per-hypothesis counts that drive tuning, the oracle, the gain share and the bootstrap,
comes from one alignment: sclite's costs (`rescorer.alignment`), so that the figures agree
with NIST sclite to the last printed digit and a report never shows two counts for one choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import jiwer
import numpy as np

from rescorer.alignment import sclite_counts
from rescorer.errors import InputError


@dataclass(frozen=True)
class WerResult:
    wer: float  # a fraction; reports print it as a percentage
    substitutions: int
    deletions: int
    insertions: int
    hits: int
    ref_words: int
    sentences: int
    sentence_errors: int  # utterances with at least one error

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    def to_dict(self) -> dict:
        return {**asdict(self), "errors": self.errors, "wer_percent": 100 * self.wer}


def compute_wer(references: Sequence[str], hypotheses: Sequence[str]) -> WerResult:
    """Corpus WER of hypotheses against references (lists of the same length, same order)."""
    if len(references) != len(hypotheses):
        raise InputError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        raise InputError("no utterances to score")
    out = jiwer.process_words(list(references), list(hypotheses))  # jiwer's word splitting
    totals = np.zeros(4, dtype=np.int64)
    sentence_errors = 0
    for ref, hyp in zip(out.references, out.hypotheses, strict=True):
        counts = sclite_counts(ref, hyp)
        totals += counts
        sentence_errors += sum(counts[1:]) > 0
    hits, subs, dels, ins = (int(x) for x in totals)
    ref_words = hits + subs + dels
    errors = subs + dels + ins
    return WerResult(
        wer=errors / ref_words if ref_words else float(errors > 0), substitutions=subs, deletions=dels,
        insertions=ins, hits=hits, ref_words=ref_words, sentences=len(references), sentence_errors=sentence_errors,
    )


def pairwise_errors(references: Sequence[str], hypotheses: Sequence[str]) -> np.ndarray:
    """Errors (S + D + I under sclite's alignment) of each hypothesis against its reference: (n,) int64.

    The minimum edit count (jiwer's, in C++) is a lower bound on sclite's count and equals it
    when it is 0 or 1 (a single error costs at most 4 under sclite's weights, two cost at
    least 6), so only the hypotheses with two or more edits are aligned again with sclite's
    costs (in Python). Identical pairs are aligned once.
    """
    if len(references) != len(hypotheses):
        raise InputError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        return np.zeros(0, dtype=np.int64)
    out = jiwer.process_words(list(references), list(hypotheses))
    errors = np.zeros(len(out.alignments), dtype=np.int64)
    seen: dict[tuple[tuple[str, ...], tuple[str, ...]], int] = {}
    for i, (chunks, ref, hyp) in enumerate(zip(out.alignments, out.references, out.hypotheses, strict=True)):
        edits = sum(max(c.ref_end_idx - c.ref_start_idx, c.hyp_end_idx - c.hyp_start_idx)
                    for c in chunks if c.type != "equal")
        if edits >= 2:
            key = (tuple(ref), tuple(hyp))
            if key not in seen:
                seen[key] = sum(sclite_counts(ref, hyp)[1:])
            edits = seen[key]
        errors[i] = edits
    return errors


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
