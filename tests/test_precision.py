"""Reduced precision (rescorer.precision): what is cast and what is not, scores close to fp32's,
halved weights, clear errors, and the option in the CLI and the service."""

from __future__ import annotations

import copy

import httpx
import numpy as np
import pytest
import torch

from rescorer.artifact import load_artifact, save_artifact
from rescorer.cli import main as rescorer_main
from rescorer.errors import ConfigError
from rescorer.precision import set_precision, weight_bytes
from rescorer.sentence_scoring import score_sentences
from server.settings import Settings
from tests.nbest_fixtures import tiny_artifact
from tests.server_harness import running_server

SENTENCES = [["the", "cat", "sat", "on", "the", "mat"], ["a", "dog", "ran", "far", "away"], [], ["zebra", "the"]]


@pytest.mark.parametrize("kind", ["self_normalized", "softmax", "mos"])
def test_bf16_scores_stay_close_to_fp32_and_the_output_layer_stays_fp32(kind):
    fp32 = tiny_artifact(kind)
    bf16 = copy.deepcopy(fp32)
    set_precision(bf16.model, "bf16")
    model = bf16.model
    assert model.lstm.weight_hh_l0.dtype == torch.bfloat16 and model.embedding.weight.dtype == torch.bfloat16
    assert model.output_bias.weight.dtype == torch.float32 and model.log_z.dtype == torch.float32
    want, got = score_sentences(fp32, SENTENCES), score_sentences(bf16, SENTENCES)
    assert got.log_probs.dtype == np.float64
    np.testing.assert_allclose(got.log_probs, want.log_probs, atol=0.05)
    assert not np.array_equal(got.log_probs, want.log_probs)  # it did run in bf16


def test_bf16_holds_half_the_weights_but_the_biases():
    artifact = tiny_artifact()
    before = weight_bytes(artifact.model)
    set_precision(artifact.model, "bf16")
    bias = artifact.model.output_bias.weight.numel()
    assert weight_bytes(artifact.model) == (before - 4 * bias) // 2 + 4 * bias


def test_bf16_self_normalized_scoring_still_never_forms_the_full_output_layer():
    artifact = tiny_artifact()
    set_precision(artifact.model, "bf16")

    def forbidden(*args, **kwargs):
        raise AssertionError("self-normalized scoring must not compute logits over the vocabulary")

    artifact.model.logits = forbidden
    assert np.isfinite(score_sentences(artifact, SENTENCES).log_probs).all()


def test_unknown_precisions_and_fp16_on_cpu_are_config_errors(tmp_path):
    path = save_artifact(tiny_artifact(), tmp_path / "lm")
    with pytest.raises(ConfigError, match="unknown precision 'int4'"):
        load_artifact(path, precision="int4")
    with pytest.raises(ConfigError, match="fp16 is for CUDA"):
        load_artifact(path, precision="fp16")


def test_the_cli_and_the_service_score_in_the_precision_they_are_given(tmp_path, capsys):
    path = save_artifact(tiny_artifact(), tmp_path / "models" / "tiny")
    (tmp_path / "text").write_text("k1 the cat sat\nk2 a dog\n")
    assert rescorer_main(["score", str(path), str(tmp_path / "text"), str(tmp_path / "fp32")]) == 0
    assert rescorer_main(["score", str(path), str(tmp_path / "text"), str(tmp_path / "bf16"), "--precision", "bf16"]) == 0
    fp32 = [float(line.split()[1]) for line in (tmp_path / "fp32").read_text().splitlines()]
    bf16 = [float(line.split()[1]) for line in (tmp_path / "bf16").read_text().splitlines()]
    np.testing.assert_allclose(bf16, fp32, atol=0.05)
    with pytest.raises(SystemExit) as exit_info:
        rescorer_main(["score", str(path), str(tmp_path / "text"), str(tmp_path / "x"), "--precision", "fp8"])
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err
    with running_server(Settings(model_dir=tmp_path / "models", precision="bf16")) as (url, _):
        (info,) = httpx.get(f"{url}/v1/models", timeout=30).json()
        served = httpx.post(f"{url}/v1/score/kaldi", content="k1 the cat sat\nk2 a dog\n", timeout=30).text
    assert info["precision"] == "bf16" and info["weight_bytes"] < weight_bytes(tiny_artifact().model)
    assert [float(line.split()[1]) for line in served.splitlines()] == pytest.approx(bf16, abs=1e-4)


def test_auto_is_bf16_exactly_where_the_device_has_it_in_hardware(tmp_path):
    from rescorer.precision import native_bf16, precision_of

    path = save_artifact(tiny_artifact(), tmp_path / "lm")
    model = load_artifact(path, precision="auto").model
    assert precision_of(model) == ("bf16" if native_bf16(torch.device("cpu")) else "fp32")
