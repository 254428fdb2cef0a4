"""The dynamic batcher on its own (no HTTP): the telemetry's time share."""

from __future__ import annotations

import asyncio
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


def _run_batches(monkeypatch, share: float, requests: int) -> tuple[float, float, float]:
    """Send `requests` one-request batches; return (scoring s, telemetry s, positions measured)."""

    def slow_log_z(artifact, words):
        time.sleep(MEASUREMENT_S)
        return log_z_of_sentence(artifact, words)

    monkeypatch.setattr(batcher_module, "log_z_of_sentence", slow_log_z)
    metrics = create_metrics()
    batcher = DynamicBatcher(Registry({"tiny": tiny_artifact()}, torch.device("cpu")), metrics, batch_tokens=4096,
                             max_delay_ms=0, queue_tokens=100_000, telemetry_share=share)
    batcher.start()

    async def send() -> None:
        for i in range(requests):
            scores = await batcher.submit("tiny", [["the", "cat", "sat"], ["a", "dog"] * (1 + i % 3)], timeout=30)
            assert np.all(np.isfinite(scores.log_probs))

    try:
        asyncio.run(send())
    finally:
        batcher.stop()
    value = metrics.registry.get_sample_value
    labels = {"model": "tiny"}
    return (value("rescorer_scoring_seconds_total", labels), value("rescorer_telemetry_seconds_total", labels) or 0.0,
            value("rescorer_log_z_count", labels) or 0.0)


@pytest.mark.parametrize("share", [0.05, 0.5])
def test_telemetry_spends_at_most_its_share_of_the_scoring_time(monkeypatch, share):
    scoring_s, telemetry_s, positions = _run_batches(monkeypatch, share, requests=60)
    assert positions > 0  # the first batch is always measured
    # the rule is checked before each measurement, so it may overshoot by one measurement at most
    assert telemetry_s <= share * scoring_s + MEASUREMENT_S * 1.5
    # and it is a share of the time, not of the batches: far fewer than one measurement per batch
    assert telemetry_s < 0.5 * 60 * MEASUREMENT_S


def test_a_zero_share_turns_the_telemetry_off(monkeypatch):
    scoring_s, telemetry_s, positions = _run_batches(monkeypatch, 0.0, requests=5)
    assert scoring_s > 0 and telemetry_s == 0 and positions == 0
