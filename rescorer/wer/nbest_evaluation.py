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
from rescorer.wer.counts import WerResult, minimum_edit_counts, realign, wer_from_counts


class ErrorTable:
    """Every hypothesis of an N-best set against its reference, under sclite's alignment.

    Built from the minimum-edit counts (exact where they count 0 or 1 errors); a hypothesis is
    aligned with sclite's costs when its count is first asked for, once. Tuning and the
    bootstrap ask for all of them (`counts`, `hyp_errors`); the service asks only for the
    first pass, its choice and the oracle (`counts_of`, `oracle`), which needs few alignments
    because a minimum-edit count is a lower bound.
    """

    def __init__(self, lower: np.ndarray, refs: list[list[str]], hyps: list[list[str]], ref_words: np.ndarray):
        self._counts = lower
        self._exact = lower[:, 1:].sum(1) <= 1
        self._refs, self._hyps = refs, hyps
        self.ref_words = ref_words  # (U,)

    def counts_of(self, indices) -> np.ndarray:
        """(k, 4) hits, substitutions, deletions, insertions of the hypotheses at flat `indices`."""
        indices = np.asarray(indices, dtype=np.int64)
        self._make_exact(np.unique(indices[~self._exact[indices]]))
        return self._counts[indices]

    def _make_exact(self, indices: np.ndarray) -> None:
        realign(self._counts, self._refs, self._hyps, indices)  # jiwer has split and aligned them once already
        self._exact[indices] = True

    @property
    def counts(self) -> np.ndarray:  # (H, 4)
        self._make_exact(np.flatnonzero(~self._exact))
        return self._counts

    @property
    def hyp_errors(self) -> np.ndarray:  # (H,) S + D + I
        return self.counts[:, 1:].sum(1)

    def wer_of(self, chosen: np.ndarray) -> WerResult:
        """Corpus WER of one hypothesis per utterance, given as flat indices (U,)."""
        return wer_from_counts(self.counts_of(chosen))

    def oracle(self, arrays: NbestArrays) -> np.ndarray:
        """`oracle_hypotheses(arrays, self.hyp_errors)`, aligning only the hypotheses that can
        still win: in the order of their lower bounds, until a bound exceeds the best count."""
        lower = self._counts[:, 1:].sum(1)
        out = np.empty(len(arrays.index), dtype=np.int64)
        for u, row in enumerate(arrays.index):
            candidates = row[row >= 0]
            best, best_errors = -1, 0
            for i in sorted(candidates.tolist(), key=lambda i: (lower[i], i)):
                if best >= 0 and lower[i] > best_errors:
                    break
                errors = int(self.counts_of([i])[0, 1:].sum())
                if best < 0 or errors < best_errors or (errors == best_errors and i < best):
                    best, best_errors = i, errors
            out[u] = best
        return out


def error_table(utterances: Sequence[Utterance]) -> ErrorTable:
    missing = [u.utt_id for u in utterances if u.ref is None]
    if missing:
        raise NbestError(f"utterance {missing[0]!r} has no reference ({len(missing)} without one); WER needs them all")
    lower, refs, hyps = minimum_edit_counts([u.ref for u in utterances for _ in u.hyps],
                                            [h.text for u in utterances for h in u.hyps])
    first = np.cumsum([0] + [len(u.hyps) for u in utterances[:-1]])
    return ErrorTable(lower, refs, hyps, lower[first, :3].sum(1))


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
