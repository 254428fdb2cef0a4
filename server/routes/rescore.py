from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from rescorer.alignment import sclite_counts
from rescorer.combination import Weights, best_hypotheses, build_arrays, ranks, total_scores
from rescorer.evaluation import oracle_hypotheses
from rescorer.nbest import Hypothesis, Utterance
from rescorer.wer import pairwise_errors
from server.routes.limits import check_count
from server.schemas import HypothesisOut, RescoreRequest, RescoreResponse, UtteranceOut, WerOut, json_response

router = APIRouter(tags=["rescoring"])


def _to_utterances(body: RescoreRequest) -> list[Utterance]:
    return [Utterance(u.utt_id, [Hypothesis(" ".join(h.text.split()), h.am_score, h.lm_score) for h in u.hyps],
                      None if u.ref is None else " ".join(u.ref.split()))
            for u in body.utterances]


def check_rescore_limits(body: RescoreRequest, settings) -> None:
    check_count(["utterances"], len(body.utterances), settings.max_utterances, "utterances")
    for i, u in enumerate(body.utterances):
        check_count(["utterances", i, "hyps"], len(u.hyps), settings.max_hyps_per_utterance, "hypotheses")
        for j, h in enumerate(u.hyps):
            check_count(["utterances", i, "hyps", j, "text"], len(h.text.split()), settings.max_words_per_hyp, "words")


def _wer_out(counts: np.ndarray) -> WerOut:
    """counts: (3, 4) sclite (hits, subs, dels, ins) for before, after, oracle."""
    ref_words = int(counts[0, 0] + counts[0, 1] + counts[0, 2])
    rates = [float(c[1:].sum()) / ref_words if ref_words else float(c[1:].sum() > 0) for c in counts]
    return WerOut(before=rates[0], after=rates[1], oracle=rates[2], ref_words=ref_words)


def _respond(name: str, utterances: list[Utterance], log_probs: np.ndarray, oov: np.ndarray, weights: Weights) -> RescoreResponse:
    arrays = build_arrays(utterances, log_probs, oov)
    totals = total_scores(arrays, weights)
    rank = ranks(arrays, totals)
    best = best_hypotheses(arrays, totals)
    texts = [h.text for u in utterances for h in u.hyps]
    with_refs = all(u.ref is not None for u in utterances)
    errors = pairwise_errors([u.ref for u in utterances for _ in u.hyps], texts) if with_refs else None
    oracles = oracle_hypotheses(arrays, errors) if with_refs else None
    corpus_counts = np.zeros((3, 4), dtype=np.int64)
    out = []
    for u, utt in enumerate(utterances):
        start = int(arrays.offsets[u])
        hyps = [HypothesisOut(text=h.text, am_score=h.am_score, lm_score=h.lm_score, nnlm_score=float(arrays.nnlm[start + n]),
                              total=float(totals[start + n]), rank=int(rank[start + n]), first_pass_rank=n + 1,
                              oov=int(arrays.num_oov[start + n]))
                for n, h in enumerate(utt.hyps)]
        hyps.sort(key=lambda h: h.rank)
        wer = None
        if with_refs:
            ref = utt.ref.split()
            counts = np.array([sclite_counts(ref, texts[i].split()) for i in (start, int(best[u]), int(oracles[u]))])
            corpus_counts += counts
            wer = _wer_out(counts)
        out.append(UtteranceOut(utt_id=utt.utt_id, best=texts[best[u]], hyps=hyps, wer=wer))
    return RescoreResponse(model=name, weights=weights.to_dict(), utterances=out,
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
    scores = await state.batcher.submit(name, [h.words for u in utterances for h in u.hyps], settings.request_timeout_s)
    response = await run_in_threadpool(_respond, name, utterances, scores.log_probs, scores.num_oov, weights)
    return json_response(response)
