"""Whether batching across requests pays for a model on the service's device, decided at load.

On a GPU one call of many requests' hypotheses costs little more than one request's, so the
service batches across requests. On a CPU a call of several requests also makes the scoring
thread and the event loop take turns (the loop idles while a batch of every waiting request is
scored, then gets all their answers and the next requests at once), where one request per call
lets the loop's work overlap the scoring; batching pays only where it saves more scoring time
per request than that costs. Measured with bench/server_load.py on the LibriSpeech dev_other
lists, two serving processes (docs/RESULTS.md, "Serving peers"): the 2 x 256 LSTM served 1.14x
as many requests batched as not at concurrency 64 (1.02x at 32), a 1 x 48 self-normalized
student 0.94x (0.93x at 32), though one call of many lists scores faster than one per call for
both. What separates them is the scoring time a batch saves per request, as the measurement
below finds it (`rescorer-server --model-dir M --precision P --processes 1` logs it at start;
three starts each): 0.88-0.98 ms per list for the LSTM in fp32, 0.14-0.15 ms for the student;
at one start each, -0.48 ms for the LSTM in bf16 and -16 ms for a mixture-of-softmaxes teacher.
Without the uncounted first round, a fresh process once measured the LSTM at 0.36 ms: the first
calls build a kernel for every new shape. So at load, synthetic lists like real ones (CALIBRATION_UTTERANCES lists of HYPOTHESES
sentences of nearly one length each, lengths varying between lists, words drawn from the
vocabulary) are scored one list per call and all in one call, alternately, best of ROUNDS (one
round only once BUDGET_S is spent), in one thread as a scoring worker runs; the service batches
across requests where one call saves at least MIN_SAVING_MS per list. With no delay on CPU,
batches still only form from requests that queued while the workers were busy, so at low load
nothing changes. The operator's `--max-batch-requests` overrides the choice.
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
BUDGET_S = 5.0  # past this, no further round: a slow model is measured once, not three times
MIN_SAVING_MS = 0.5


@dataclass(frozen=True)
class BatchingChoice:
    batch_across_requests: bool
    gain: float | None  # one call's speed over one list per call (None: not measured, an accelerator)
    saving_ms: float | None  # scoring time one call saves per list
    reason: str


def choose_batching(artifact: Artifact, device: torch.device, batch_tokens: int) -> BatchingChoice:
    if device.type != "cpu":
        return BatchingChoice(True, None, None, f"{device.type}: one device call for many requests")
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
        best = {"one": float("inf"), "together": float("inf")}
        warm = False
        begun = time.perf_counter()
        for _ in range(ROUNDS + 1):  # the first round warms up (kernels built for each new shape) and is not counted
            if best["one"] < float("inf") and time.perf_counter() - begun > BUDGET_S:
                break
            started = time.perf_counter()
            for hyps in lists:
                score_sentences(artifact, hyps, max_tokens=batch_tokens)
            one = time.perf_counter() - started
            started = time.perf_counter()
            score_sentences(artifact, together, max_tokens=batch_tokens)
            together_s = time.perf_counter() - started
            if warm:
                best["one"], best["together"] = min(best["one"], one), min(best["together"], together_s)
            warm = True
    finally:
        torch.set_num_threads(threads)
    gain = best["one"] / best["together"]
    saving_ms = (best["one"] - best["together"]) / CALIBRATION_UTTERANCES * 1000
    batch = saving_ms >= MIN_SAVING_MS
    return BatchingChoice(batch, gain, saving_ms,
                          f"cpu: {CALIBRATION_UTTERANCES} lists in one call scored {gain:.2f}x as fast as one per call,"
                          f" saving {saving_ms:.2f} ms per list ({'at least' if batch else 'below'} {MIN_SAVING_MS})")
