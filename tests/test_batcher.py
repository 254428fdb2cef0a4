"""The dynamic batcher on its own (no HTTP): the telemetry's time share."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
import torch

import server.batcher as batcher_module
from rescorer.self_normalization import log_z_of_sentence
from server.batcher import DynamicBatcher
from server.metrics import create_metrics
from server.registry import Registry
from tests.nbest_fixtures import tiny_artifact

MEASUREMENT_S = 0.03  # each exact log Z measurement made this slow, far slower than scoring a batch


def _run_batches(monkeypatch, share: float, requests: int, workers: int = 1) -> tuple[float, float, float]:
    """Send `requests` one-request batches; return (scoring s, telemetry s, positions measured)."""

    def slow_log_z(artifact, words):
        time.sleep(MEASUREMENT_S)
        return log_z_of_sentence(artifact, words)

    monkeypatch.setattr(batcher_module, "log_z_of_sentence", slow_log_z)
    metrics = create_metrics()
    batcher = DynamicBatcher(Registry({"tiny": tiny_artifact()}, torch.device("cpu")), metrics, batch_tokens=4096,
                             max_delay_ms=0, queue_tokens=100_000, telemetry_share=share, workers=workers)
    batcher.start()

    async def send(i: int) -> None:
        scores = await batcher.submit("tiny", [["the", "cat", "sat"], ["a", "dog"] * (1 + i % 3)], timeout=30)
        assert np.all(np.isfinite(scores.log_probs))

    async def send_all() -> None:  # `workers` requests in flight at a time
        for start in range(0, requests, workers):
            await asyncio.gather(*(send(i) for i in range(start, min(requests, start + workers))))

    try:
        asyncio.run(send_all())
    finally:
        batcher.stop()
    value = metrics.registry.get_sample_value
    labels = {"model": "tiny"}
    return (value("rescorer_scoring_seconds_total", labels), value("rescorer_telemetry_seconds_total", labels) or 0.0,
            value("rescorer_log_z_count", labels) or 0.0)


@pytest.mark.parametrize("share, workers", [(0.05, 1), (0.5, 1), (0.05, 2)])
def test_telemetry_spends_at_most_its_share_of_the_scoring_time(monkeypatch, share, workers):
    scoring_s, telemetry_s, positions = _run_batches(monkeypatch, share, requests=60, workers=workers)
    assert positions > 0  # the first batch is always measured
    # one measurement at a time, the rule checked before each: it may overshoot by one at most
    assert telemetry_s <= share * scoring_s + MEASUREMENT_S * 1.5
    # and it is a share of the time, not of the batches: far fewer than one measurement per batch
    assert telemetry_s < 0.5 * 60 * MEASUREMENT_S


def test_a_zero_share_turns_the_telemetry_off(monkeypatch):
    scoring_s, telemetry_s, positions = _run_batches(monkeypatch, 0.0, requests=5)
    assert scoring_s > 0 and telemetry_s == 0 and positions == 0


def test_workers_score_separate_batches_side_by_side_with_the_same_answers(monkeypatch):
    real = batcher_module.score_sentences
    active, most = [0], [0]
    lock = threading.Lock()

    def slow_score(artifact, sentences, **kwargs):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.2)
        try:
            return real(artifact, sentences, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(batcher_module, "score_sentences", slow_score)
    artifact = tiny_artifact()
    batcher = DynamicBatcher(Registry({"tiny": artifact}, torch.device("cpu")), create_metrics(), batch_tokens=4096,
                             max_delay_ms=0, queue_tokens=100_000, max_batch_requests=1, workers=2)
    batcher.start()
    requests = [[["the", "cat", "sat"]], [["a", "dog", "ran", "far"], ["away"]]]

    async def send_both():
        return await asyncio.gather(*(batcher.submit("tiny", r, timeout=30) for r in requests))

    try:
        results = asyncio.run(send_both())
    finally:
        batcher.stop()
    assert most[0] == 2  # one batch each (max_batch_requests=1), both scoring at once (no wall-clock bound)
    for sentences, result in zip(requests, results, strict=True):
        np.testing.assert_allclose(result.log_probs, real(artifact, sentences).log_probs, atol=1e-6)
