"""Rescoring N-best lists end to end: score every hypothesis with our LM, combine, re-rank."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from rescorer.artifact import Artifact
from rescorer.combination import NbestArrays, Weights, build_arrays, ranks, total_scores
from rescorer.nbest import NbestError, Utterance
from rescorer.sentence_scoring import encode_sentences, score_sentences


def score_nbest(artifact: Artifact, utterances: Sequence[Utterance], max_tokens: int = 4096,
                progress: bool = False) -> NbestArrays:
    """Our LM's score for every hypothesis, in the arrays the combination works on."""
    sentences = [h.words for u in utterances for h in u.hyps]
    scores = score_sentences(artifact, sentences, max_tokens=max_tokens, progress=progress)
    return build_arrays(utterances, scores.log_probs, scores.num_oov)


def arrays_from_costs(artifact: Artifact, utterances: Sequence[Utterance], costs: dict[str, float],
                      where: str) -> NbestArrays:
    """The arrays of `score_nbest` from our LM's costs computed before (a `key cost` archive keyed
    utt-1 .. utt-N, as `rescorer score` or parallel Kaldi jobs write it): nnlm_score = -cost,
    words outside the artifact's vocabulary counted as `score_nbest` counts them. Every
    hypothesis must have its cost, and no other key may appear."""
    keys = [f"{u.utt_id}-{n}" for u in utterances for n in range(1, len(u.hyps) + 1)]
    missing = next((k for k in keys if k not in costs), None)
    if missing is not None:
        raise NbestError(f"{where}: no cost for hypothesis {missing!r}")
    if len(costs) != len(keys):
        extra = next(k for k in costs if k not in set(keys))
        raise NbestError(f"{where}: cost for {extra!r}, which is not a hypothesis of the lists")
    _, oov = encode_sentences(artifact, [h.words for u in utterances for h in u.hyps])
    return build_arrays(utterances, -np.array([costs[k] for k in keys], dtype=np.float64), oov)


def rerank(utterances: Sequence[Utterance], arrays: NbestArrays, weights: Weights) -> list[Utterance]:
    """Copies of the utterances with hypotheses sorted by total (best first), each carrying the
    scores `nnlm_score` and `total` and the fields `rank`, `first_pass_rank`, `oov`."""
    totals = total_scores(arrays, weights)
    rank = ranks(arrays, totals)
    out = []
    for u, utt in enumerate(utterances):
        start = arrays.offsets[u]
        hyps = []
        for n, hyp in enumerate(utt.hyps):
            i = start + n
            hyps.append(replace(
                hyp, scores={**hyp.scores, "nnlm_score": float(arrays.nnlm[i]), "total": float(totals[i])},
                extra={**hyp.extra, "rank": int(rank[i]),
                       "first_pass_rank": n + 1, "oov": int(arrays.num_oov[i])},
            ))
        hyps.sort(key=lambda h: h.extra["rank"])
        out.append(replace(utt, hyps=hyps))
    return out


def best_texts(reranked: Sequence[Utterance]) -> list[tuple[str, str]]:
    return [(u.utt_id, u.hyps[0].text) for u in reranked]


def count_oov(arrays: NbestArrays) -> tuple[int, int]:
    """(words scored as <unk>, all words) over every hypothesis."""
    return int(np.sum(arrays.num_oov)), int(np.sum(arrays.num_words))
