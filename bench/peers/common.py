"""What every peer of bench/peer_serving.py runs inside its server: the library, and nothing else.

`rescore_bodies(artifact, bodies)` takes the decoded bodies of one or more POST /v1/rescore
requests (the service's own request format: {"utterances": [{"utt_id", "hyps": [{"text",
"am_score", "lm_score"}]}]}), reads them with the library's JSONL rules
(rescorer.formats.jsonl.parse_utterance: a list the readers would refuse raises NbestError),
scores every hypothesis of every body in one `score_sentences` call, combines with the default
weights (rescorer.combination) and answers, per body, each hypothesis's LM score and total and
each list's best hypothesis. A peer with a batcher calls it once per batch, as its documented
batching interface has it do (one function over the batch's inputs), so a body the library
refuses fails the call and with it every request in the batch: the poisoned-batch row of the
bench measures exactly that.
"""

from __future__ import annotations

import os

import torch

from rescorer.artifact import load_artifact
from rescorer.combination import Weights, build_arrays, ranked_index, total_scores
from rescorer.formats.jsonl import parse_utterance
from rescorer.sentence_scoring import score_sentences
from rescorer.words import split_words


def load_from_environment():
    """The artifact named by PEER_MODEL_DIR, in PEER_PRECISION (default fp32), with
    PEER_TORCH_THREADS intra-op threads (default 1: one per serving process or replica)."""
    torch.set_num_threads(int(os.environ.get("PEER_TORCH_THREADS", "1")))
    return load_artifact(os.environ["PEER_MODEL_DIR"], precision=os.environ.get("PEER_PRECISION", "fp32"))


def rescore_bodies(artifact, bodies: list[dict]) -> list[dict]:
    per_body = [[parse_utterance(u, f"request {b} utterance {i}") for i, u in enumerate(body["utterances"])]
                for b, body in enumerate(bodies)]
    utterances = [u for body in per_body for u in body]
    sentences = [split_words(h.text) for u in utterances for h in u.hyps]
    scores = score_sentences(artifact, sentences)
    arrays = build_arrays(utterances, scores.log_probs, scores.num_oov)
    totals = total_scores(arrays, Weights())
    best = ranked_index(arrays, totals)[:, 0]  # each list's best, as a flat hypothesis index
    answers, hyp, utt = [], 0, 0
    for body in per_body:
        out = []
        for u in body:
            n = len(u.hyps)
            out.append({"utt_id": u.utt_id, "nnlm_score": scores.log_probs[hyp:hyp + n].tolist(),
                        "total": totals[hyp:hyp + n].tolist(), "best": int(best[utt] - hyp)})
            hyp += n
            utt += 1
        answers.append({"utterances": out})
    return answers
