"""CUDA checks (`pytest -m gpu` on a machine with a GPU): the scorer and the service give the
CPU's numbers on the device, in fp32, fp16 and bf16."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import torch

from rescorer.artifact import save_artifact
from rescorer.sentence_scoring import score_sentences
from server.settings import Settings
from tests.nbest_fixtures import tiny_artifact
from tests.server_harness import running_server

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

SENTENCES = [["the", "cat", "sat", "on", "the", "mat"], ["a", "dog"], [], ["zebra", "ran", "far", "away"]]


@pytest.mark.parametrize("kind", ["self_normalized", "softmax"])
def test_cuda_scores_equal_cpu_scores(kind):
    cpu = tiny_artifact(kind)
    gpu = tiny_artifact(kind)
    gpu.model.to("cuda")
    expected = score_sentences(cpu, SENTENCES, per_token=True)
    got = score_sentences(gpu, SENTENCES, per_token=True)
    np.testing.assert_allclose(got.log_probs, expected.log_probs, atol=1e-4)
    np.testing.assert_array_equal(got.num_oov, expected.num_oov)


@pytest.mark.parametrize("precision, atol", [("fp32", 1e-4), ("fp16", 5e-2), ("bf16", 5e-2)])
def test_the_service_on_cuda_answers_as_the_cpu_library_does(tmp_path, precision, atol):
    save_artifact(tiny_artifact(), tmp_path / "tiny")
    settings = Settings(model_dir=tmp_path / "tiny", device="cuda", precision=precision)
    body = {"sentences": [" ".join(s) for s in SENTENCES]}
    with running_server(settings) as (url, app):
        assert app.state.registry.device.type == "cuda"
        response = httpx.post(f"{url}/v1/score", json=body, timeout=30)
    assert response.status_code == 200
    expected = score_sentences(tiny_artifact(), SENTENCES).log_probs
    np.testing.assert_allclose([s["log_prob"] for s in response.json()["scores"]], expected, atol=atol)
