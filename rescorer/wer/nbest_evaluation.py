"""The WER evaluation of one N-best set under fixed weights: before, after, oracle, gain, CI.

- first pass: the first hypothesis of each list (readers keep the decoder's order);
- acoustic only: the best am_score;
- rescored: the best total under the weights (rescorer.combination);
- oracle: the hypothesis with the fewest errors in each list (the best any reranker can do);
- gain share: (first pass - rescored) / (first pass - oracle), in errors;
- a paired bootstrap interval of WER(rescored) - WER(first pass) over utterances.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rescorer.combination import NbestArrays, Weights, best_hypotheses, total_scores
from rescorer.nbest import NbestError, Utterance
from rescorer.wer.bootstrap import BootstrapInterval, paired_bootstrap
from rescorer.wer.counts import WerResult, alignment_counts, wer_from_counts


@dataclass
class ErrorTable:
    """Every hypothesis aligned once against its reference (sclite's alignment), per N-best set."""

    counts: np.ndarray  # (H, 4) hits, substitutions, deletions, insertions
    ref_words: np.ndarray  # (U,)

    @property
    def hyp_errors(self) -> np.ndarray:  # (H,) S + D + I
        return self.counts[:, 1:].sum(1)

    def wer_of(self, chosen: np.ndarray) -> WerResult:
        """Corpus WER of one hypothesis per utterance, given as flat indices (U,)."""
        return wer_from_counts(self.counts[chosen])


def error_table(utterances: Sequence[Utterance]) -> ErrorTable:
    missing = [u.utt_id for u in utterances if u.ref is None]
    if missing:
        raise NbestError(f"utterance {missing[0]!r} has no reference ({len(missing)} without one); WER needs them all")
    refs = [u.ref for u in utterances for _ in u.hyps]
    hyps = [h.text for u in utterances for h in u.hyps]
    counts = alignment_counts(refs, hyps)
    first = np.cumsum([0] + [len(u.hyps) for u in utterances[:-1]])
    return ErrorTable(counts, counts[first, :3].sum(1))


def oracle_hypotheses(arrays: NbestArrays, hyp_errors: np.ndarray) -> np.ndarray:
    """Flat index of the hypothesis with the fewest errors in each list (ties: the earlier): (U,)."""
    padded = np.where(arrays.index >= 0, hyp_errors[np.maximum(arrays.index, 0)], np.iinfo(np.int64).max)
    return arrays.index[np.arange(len(arrays.index)), padded.argmin(1)]


@dataclass
class SetEvaluation:
    first_pass: WerResult
    acoustic_only: WerResult
    rescored: WerResult
    oracle: WerResult
    gain_share: float  # share of the achievable error reduction obtained
    interval: BootstrapInterval
    changed: list[dict]  # utterances whose choice changed: id, errors before and after
    choices: np.ndarray  # (U,) flat index of the chosen hypothesis

    def to_dict(self) -> dict:
        return {
            "first_pass": self.first_pass.to_dict(), "acoustic_only": self.acoustic_only.to_dict(),
            "rescored": self.rescored.to_dict(), "oracle": self.oracle.to_dict(),
            "gain_share": self.gain_share, "bootstrap": self.interval.to_dict(),
            "utterances_changed": len(self.changed),
            "utterances_improved": sum(1 for c in self.changed if c["errors_after"] < c["errors_before"]),
            "utterances_worsened": sum(1 for c in self.changed if c["errors_after"] > c["errors_before"]),
            "changes": self.changed,
        }


def evaluate_set(utterances: Sequence[Utterance], arrays: NbestArrays, table: ErrorTable, weights: Weights,
                 resamples: int = 1000) -> SetEvaluation:
    texts = [h.text for u in utterances for h in u.hyps]
    first = arrays.offsets[:-1]
    acoustic = best_hypotheses(arrays, arrays.am)
    rescored = best_hypotheses(arrays, total_scores(arrays, weights))
    oracle = oracle_hypotheses(arrays, table.hyp_errors)

    errors_first, errors_new = table.hyp_errors[first], table.hyp_errors[rescored]
    possible = errors_first.sum() - table.hyp_errors[oracle].sum()
    changed = [
        {"utt_id": arrays.utt_ids[u], "before": texts[first[u]], "after": texts[rescored[u]],
         "errors_before": int(errors_first[u]), "errors_after": int(errors_new[u])}
        for u in np.flatnonzero(rescored != first)
    ]
    return SetEvaluation(
        first_pass=table.wer_of(first), acoustic_only=table.wer_of(acoustic), rescored=table.wer_of(rescored),
        oracle=table.wer_of(oracle),
        gain_share=float((errors_first.sum() - errors_new.sum()) / possible) if possible else 0.0,
        interval=paired_bootstrap(errors_first, errors_new, table.ref_words, resamples),
        changed=changed, choices=rescored,
    )
