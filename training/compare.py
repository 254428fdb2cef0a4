"""Several artifacts side by side on one text: size, perplexity, and how fast the rescorer scores.

    rescorer-train compare TEACHER_A TEACHER_B STUDENT --text test.txt

Per artifact: output kind, parameters, normalized perplexity (full softmax; sentences from a
zero state, as the rescorer scores them), self-normalized perplexity where the model is
self-normalized (no softmax: what the rescorer computes), and words/s through
`rescorer.score_sentences` on the same sentences in the same process, best of `repeats`
(the models take turns in each round, so the machine's drift falls on all of them alike).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from rescorer.artifact import load_artifact, parameter_count
from rescorer.errors import InputError
from rescorer.sentence_scoring import score_sentences
from training.corpus import iter_sentences
from training.perplexity import evaluate


def compare_models(paths: list[str], text: str, repeats: int = 3) -> list[dict]:
    sentences = list(iter_sentences(text))
    if not sentences:
        raise InputError(f"{text}: no sentences to compare the models on")
    artifacts = [load_artifact(p) for p in paths]
    rows = []
    for path, artifact in zip(paths, artifacts, strict=True):
        vocab = artifact.vocab
        result = evaluate(artifact.model, [artifact.token_ids(s) for s in sentences], vocab.bos_id, vocab.eos_id)
        rows.append({"artifact": path, "output_kind": artifact.model.config.output_kind,
                     "parameters": parameter_count(artifact.model.config), "normalized_ppl": result.normalized_ppl,
                     "self_normalized_ppl": result.self_normalized_ppl if artifact.model.is_self_normalized else None})
    words = sum(len(s) + 1 for s in sentences)
    for row, seconds in zip(rows, scoring_seconds(artifacts, sentences, repeats), strict=True):
        row["seconds"], row["words_per_second"] = seconds, words / seconds
    return rows


def scoring_seconds(artifacts: list, sentences: list[list[str]], repeats: int = 3) -> list[float]:
    """Each artifact's best time over `repeats` rounds to score `sentences` with
    rescorer.score_sentences; the models take turns in each round, so the machine's drift falls on
    all of them alike."""
    best = [float("inf")] * len(artifacts)
    for _ in range(repeats):
        for i, artifact in enumerate(artifacts):
            started = time.perf_counter()
            score_sentences(artifact, sentences)
            best[i] = min(best[i], time.perf_counter() - started)
    return best


def print_comparison(rows: list[dict], text: str) -> None:
    print(f"{text}: perplexity and scoring speed (rescorer.score_sentences, this process's threads)")
    print(f"{'artifact':40s} {'kind':16s} {'params':>10s} {'ppl':>9s} {'self-norm':>9s} {'words/s':>10s} {'speed':>7s}")
    slowest = min(r["words_per_second"] for r in rows)
    for r in rows:
        self_norm = f"{r['self_normalized_ppl']:9.2f}" if r["self_normalized_ppl"] is not None else f"{'':9s}"
        print(f"{Path(r['artifact']).parent.name + '/' + Path(r['artifact']).name:40.40s} {r['output_kind']:16s}"
              f" {r['parameters']:10d} {r['normalized_ppl']:9.2f} {self_norm} {r['words_per_second']:10.0f}"
              f" {r['words_per_second'] / slowest:6.1f}x")


def teachers_dev_perplexity(teacher_paths: list[str], text: str) -> dict[str, float]:
    """Each teacher's perplexity on `text` as the rescorer scores it (a softmax or mixture
    teacher normalized) and the ensemble's (the log of the members' mean probability, token by
    token: the distribution a student is distilled toward)."""
    sentences = list(iter_sentences(text))
    scores = {path: score_sentences(load_artifact(path), sentences, per_token=True) for path in teacher_paths}
    tokens = int(next(iter(scores.values())).num_tokens.sum())
    out = {path: math.exp(-float(s.log_probs.sum()) / tokens) for path, s in scores.items()}
    if len(teacher_paths) > 1:
        stacked = [np.concatenate(s.token_log_probs) for s in scores.values()]
        mean = np.logaddexp.reduce(np.stack(stacked), axis=0) - math.log(len(stacked))
        out["ensemble"] = math.exp(-float(mean.sum()) / tokens)
    return out
