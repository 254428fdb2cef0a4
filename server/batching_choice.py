"""Whether batching across requests pays for a model on the service's device, decided at load.

On a GPU one call of many requests' hypotheses costs little more than one request's, so the
service batches across requests. On a CPU it rarely pays: a call of several requests makes the
scoring thread and the event loop take turns (the loop has nothing to do while a batch of all
the waiting requests is scored, then all of their answers and the next requests at once), where
one request per call lets the loop's work overlap the scoring. Measured with bench/server_load.py
on the LibriSpeech dev_other lists (docs/RESULTS.md): the library scored twelve lists per call
about 1.2x as fast as one per call in one thread for a 1 x 48 self-normalized student, and the
service still answered 0.90x as many requests batching across requests as not; for the 2 x 256
LSTM about 1.1x, and 0.99x. So the choice is measured per model when it loads, and the bar is
high: synthetic lists like real ones (CALIBRATION_UTTERANCES lists of HYPOTHESES sentences of
nearly one length each, lengths varying between lists, words drawn from the vocabulary) scored
one list per call and all in one call, alternately, best of ROUNDS, in one thread as a scoring
worker runs; the service batches across requests only where one call is at least MIN_GAIN
times as fast (a model whose per-request cost is dominated by large matrix products). The
operator's `--max-batch-requests` overrides the choice.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import torch

from rescorer.artifact import Artifact
from rescorer.sentence_scoring import score_sentences

CALIBRATION_UTTERANCES = 12
HYPOTHESES = 30
LIST_WORDS = (4, 30)  # each list's length; its hypotheses differ from it by at most one word
ROUNDS = 3
MIN_GAIN = 1.5


@dataclass(frozen=True)
class BatchingChoice:
    batch_across_requests: bool
    gain: float | None  # one call's speed over one list per call (None: not measured, an accelerator)
    reason: str


def choose_batching(artifact: Artifact, device: torch.device, batch_tokens: int) -> BatchingChoice:
    if device.type != "cpu":
        return BatchingChoice(True, None, f"{device.type}: one device call for many requests")
    rng = random.Random(0)
    words = [w for w in artifact.vocab.words if not w.startswith("<")] or ["a"]
    lists = []
    for _ in range(CALIBRATION_UTTERANCES):
        length = rng.randint(*LIST_WORDS)
        lists.append([[rng.choice(words) for _ in range(max(1, length + rng.randint(-1, 1)))]
                      for _ in range(HYPOTHESES)])
    together = [s for hyps in lists for s in hyps]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a scoring worker runs on CPU (server/app.py: scoring_threads)
    try:
        score_sentences(artifact, lists[0], max_tokens=batch_tokens)  # warm-up
        best = {"one": float("inf"), "together": float("inf")}
        for _ in range(ROUNDS):
            started = time.perf_counter()
            for hyps in lists:
                score_sentences(artifact, hyps, max_tokens=batch_tokens)
            best["one"] = min(best["one"], time.perf_counter() - started)
            started = time.perf_counter()
            score_sentences(artifact, together, max_tokens=batch_tokens)
            best["together"] = min(best["together"], time.perf_counter() - started)
    finally:
        torch.set_num_threads(threads)
    gain = best["one"] / best["together"]
    batch = gain >= MIN_GAIN
    return BatchingChoice(batch, gain, f"cpu: {CALIBRATION_UTTERANCES} lists in one call scored {gain:.2f}x as fast as"
                                       f" one per call ({'at least' if batch else 'below'} {MIN_GAIN})")
