"""Word error counts: corpus WER with its parts, and per-hypothesis counts (for choosing,
tuning and the oracle).

WER = (substitutions + deletions + insertions) / reference words, over the whole corpus.
Texts are split into words by the one rule of rescorer.words (ASCII whitespace), then aligned by jiwer. Every error count, the corpus figures that reports print
and the per-hypothesis counts that drive tuning, the oracle, the gain share and the bootstrap,
comes from one alignment: sclite's costs (`rescorer.wer.alignment`), so that the figures agree
with NIST sclite to the last printed digit and a report never shows two counts for one choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import jiwer
import numpy as np

from rescorer.errors import InputError
from rescorer.wer.alignment import sclite_counts
from rescorer.words import join_words


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


def minimum_edit_counts(references: Sequence[str], hypotheses: Sequence[str]
                        ) -> tuple[np.ndarray, list[list[str]], list[list[str]]]:
    """jiwer's minimum-edit alignment of every pair (C++): (n, 4) counts, and the words of each
    reference and hypothesis as jiwer split them. The error count is a lower bound on sclite's,
    and equal to it when it is 0 or 1 (one error costs at most 4 under sclite's weights, two
    cost at least 6; and one edit has a single possible kind)."""
    if len(references) != len(hypotheses):
        raise InputError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    counts = np.zeros((len(references), 4), dtype=np.int64)
    if not references:
        return counts, [], []
    # one rule for words (rescorer.words): the texts joined with single spaces, and jiwer told to
    # split on that space only (its default would also split on Unicode whitespace)
    out = jiwer.process_words([join_words(r) for r in references], [join_words(h) for h in hypotheses],
                              reference_transform=_WORDS, hypothesis_transform=_WORDS)
    for i, chunks in enumerate(out.alignments):
        for c in chunks:
            counts[i, _CHUNK_KINDS[c.type]] += max(c.ref_end_idx - c.ref_start_idx, c.hyp_end_idx - c.hyp_start_idx)
    return counts, out.references, out.hypotheses


def alignment_counts(references: Sequence[str], hypotheses: Sequence[str]) -> np.ndarray:
    """(hits, substitutions, deletions, insertions) of each hypothesis against its reference
    under sclite's alignment: (n, 4) int64. The minimum-edit counts first; only the pairs with
    two or more edits are aligned again with sclite's costs (pure Python), identical pairs once."""
    counts, refs, hyps = minimum_edit_counts(references, hypotheses)
    realign(counts, refs, hyps, np.flatnonzero(counts[:, 1:].sum(1) >= 2))
    return counts


def realign(counts: np.ndarray, refs: list[list[str]], hyps: list[list[str]], indices) -> None:
    """Replace the rows `indices` of `counts` (in place) by sclite's alignment of those pairs;
    identical pairs are aligned once."""
    seen: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[int, int, int, int]] = {}
    for i in indices:
        key = (tuple(refs[i]), tuple(hyps[i]))
        if key not in seen:
            seen[key] = sclite_counts(refs[i], hyps[i])
        counts[i] = seen[key]


_WORDS = jiwer.Compose([jiwer.ReduceToListOfListOfWords(word_delimiter=" ")])
_CHUNK_KINDS = {"equal": 0, "substitute": 1, "delete": 2, "insert": 3}


def compute_wer(references: Sequence[str], hypotheses: Sequence[str]) -> WerResult:
    """Corpus WER of hypotheses against references (lists of the same length, same order)."""
    if not references and not hypotheses:
        raise InputError("no utterances to score")
    return wer_from_counts(alignment_counts(references, hypotheses))


def wer_from_counts(counts: np.ndarray) -> WerResult:
    """Corpus WER from per-utterance (hits, subs, dels, ins) rows, as `alignment_counts` gives them."""
    hits, subs, dels, ins = (int(x) for x in counts.sum(0))
    ref_words = hits + subs + dels
    errors = subs + dels + ins
    return WerResult(
        wer=errors / ref_words if ref_words else float(errors > 0), substitutions=subs, deletions=dels,
        insertions=ins, hits=hits, ref_words=ref_words, sentences=len(counts),
        sentence_errors=int((counts[:, 1:].sum(1) > 0).sum()),
    )


def pairwise_errors(references: Sequence[str], hypotheses: Sequence[str]) -> np.ndarray:
    """Errors (S + D + I under sclite's alignment) of each hypothesis against its reference: (n,) int64."""
    return alignment_counts(references, hypotheses)[:, 1:].sum(1)
