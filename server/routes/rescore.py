from __future__ import annotations

import asyncio
import time

import numpy as np
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from rescorer.combination import Weights, build_arrays, ranked_index, ranks, total_scores
from rescorer.nbest import Hypothesis, NbestError, Utterance, check_utterance, normalize_text
from rescorer.wer.counts import wer_from_counts
from rescorer.wer.nbest_evaluation import error_table
from rescorer.words import split_words
from server.batcher import DeadlineExceeded
from server.routes.limits import check_count, limit_error
from server.schemas import HypothesisOut, RescoreRequest, RescoreResponse, UtteranceOut, WerOut, json_response

router = APIRouter(tags=["rescoring"])


def _to_utterances(body: RescoreRequest) -> list[Utterance]:
    """The library's utterances, checked by the readers' own rules (check_utterance; an id once
    per list, as every reader requires): 422 otherwise."""
    utterances = []
    first_index: dict[str, int] = {}
    for i, u in enumerate(body.utterances):
        if u.utt_id in first_index:
            raise limit_error(["utterances", i, "utt_id"],
                              f"utterance {u.utt_id!r} appears twice (first at utterances[{first_index[u.utt_id]}])")
        first_index[u.utt_id] = i
        utt = Utterance(u.utt_id, [Hypothesis(normalize_text(h.text), h.am_score, h.lm_score) for h in u.hyps],
                        None if u.ref is None else normalize_text(u.ref))
        try:
            utterances.append(check_utterance(utt, "request"))
        except NbestError as e:
            raise limit_error(["utterances", i], str(e)) from None
    return utterances


def check_rescore_limits(body: RescoreRequest, settings) -> None:
    """Every per-request cost bounded by a documented limit (docs/SERVER.md), checked before any
    work: utterances, hypotheses, words per hypothesis and per reference, and the reference
    alignments behind the WER fields (every hypothesis against its reference, for the oracle)."""
    check_count(["utterances"], len(body.utterances), settings.max_utterances, "utterances")
    cells = 0
    for i, u in enumerate(body.utterances):
        check_count(["utterances", i, "hyps"], len(u.hyps), settings.max_hyps_per_utterance, "hypotheses")
        hyp_words = 0
        for j, h in enumerate(u.hyps):
            words = len(split_words(h.text))
            check_count(["utterances", i, "hyps", j, "text"], words, settings.max_words_per_hyp, "words")
            hyp_words += max(words, 1)
        if u.ref is not None:
            ref_words = len(split_words(u.ref))
            check_count(["utterances", i, "ref"], ref_words, settings.max_words_per_ref, "words")
            cells += max(ref_words, 1) * hyp_words
    check_count(["utterances"], cells, settings.max_alignment_cells,
                "reference-alignment cells (sum over hypotheses of |ref| x |hyp|; send fewer or shorter refs)")


def _wer_out(counts: np.ndarray) -> WerOut:
    """counts: (3, 4) sclite (hits, subs, dels, ins) for before, after, oracle."""
    before, after, oracle = (wer_from_counts(c[None, :]) for c in counts)  # the library's one WER rule
    return WerOut(before=before.wer, after=after.wer, oracle=oracle.wer, ref_words=before.ref_words)


def _respond(name: str, utterances: list[Utterance], log_probs: np.ndarray, oov: np.ndarray, weights: Weights) -> RescoreResponse:
    """The response: every list in the library's order (rescorer.combination: total_scores,
    ranks; ties to the first pass), with the WER fields when every utterance has a reference.
    Built from trusted values with model_construct (no second validation): it is the service's
    per-request cost beside the scoring (bench/server_load.py)."""
    arrays = build_arrays(utterances, log_probs, oov)
    totals = total_scores(arrays, weights)
    ranked = ranked_index(arrays, totals)  # each list, best first
    rank = ranks(arrays, totals)
    with_refs = all(u.ref is not None for u in utterances)
    table = error_table(utterances) if with_refs else None
    oracles = table.oracle(arrays) if with_refs else None  # aligns only the hypotheses that can win
    corpus_counts = np.zeros((3, 4), dtype=np.int64)
    nnlm, total_list, rank_list, oov_list = arrays.nnlm.tolist(), totals.tolist(), rank.tolist(), arrays.num_oov.tolist()
    out = []
    for u, utt in enumerate(utterances):
        first = int(arrays.offsets[u])
        order = [i - first for i in ranked[u, :len(utt.hyps)].tolist()]  # positions in the list, best first
        hyps = []
        for n in order:
            h, i = utt.hyps[n], first + n
            hyps.append(HypothesisOut.model_construct(
                text=h.text, am_score=h.am_score, lm_score=h.lm_score, nnlm_score=nnlm[i], total=total_list[i],
                rank=rank_list[i], first_pass_rank=n + 1, oov=int(oov_list[i])))
        wer = None
        if with_refs:
            counts = table.counts_of([first, first + order[0], int(oracles[u])])  # before, after, oracle
            corpus_counts += counts
            wer = _wer_out(counts)
        out.append(UtteranceOut.model_construct(utt_id=utt.utt_id, best=utt.hyps[order[0]].text, hyps=hyps, wer=wer))
    return RescoreResponse.model_construct(model=name, weights=weights.to_dict(), utterances=out,
                                           wer=_wer_out(corpus_counts) if with_refs else None)


@router.post("/rescore", response_model=RescoreResponse)
async def rescore(body: RescoreRequest, request: Request) -> Response:
    """Score every hypothesis with the model, combine with the first-pass scores, re-rank.

    Weights: the request's, else the artifact's tuned ones (`rescorer set-weights`), else the
    service's settings. With references on
    every utterance, the WER before (first hypothesis), after and of the oracle is returned.
    """
    state = request.app.state
    settings = state.settings
    check_rescore_limits(body, settings)
    name, artifact = state.registry.get(body.model)
    # request > the artifact's tuned weights (`rescorer set-weights`) > the service's settings
    defaults = Weights(settings.am_weight, settings.lm_weight, settings.interp_weight, settings.word_penalty,
                       settings.oov_penalty).to_dict()
    tuned = artifact.provenance.get("rescoring_weights") or {}
    defaults.update({k: float(v) for k, v in tuned.items() if k in defaults})
    given = body.weights.model_dump(exclude_none=True) if body.weights else {}
    weights = Weights(**{**defaults, **given})
    utterances = _to_utterances(body)
    # one deadline for the whole request: the scoring and the alignments after it
    deadline = time.monotonic() + settings.request_timeout_s
    scores = await state.batcher.submit(name, [h.words for u in utterances for h in u.hyps], settings.request_timeout_s)
    if any(u.ref is not None for u in utterances):
        # the WER fields' alignments take up to seconds (bounded by --max-alignment-cells): off the loop
        remaining = deadline - time.monotonic()
        try:
            response = await asyncio.wait_for(
                run_in_threadpool(_respond, name, utterances, scores.log_probs, scores.num_oov, weights),
                max(remaining, 0))
        except TimeoutError:
            raise DeadlineExceeded(f"not answered within {settings.request_timeout_s:g} s") from None
    else:
        # without references the response is a few vectorized steps over the request's own
        # hypotheses: cheaper on the event loop than a hand-off to a thread and back
        response = _respond(name, utterances, scores.log_probs, scores.num_oov, weights)
    return json_response(response)
