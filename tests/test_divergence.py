"""The divergence guard: absurd learning rates stop train, adapt and distill with exit 2 and no
artifact, whether the run overflows or stays finite (which depends on the CPU's kernels)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.conftest import tiny_config
from training.cli import main as train_cli
from training.demo_corpus import write_demo_domain
from training.divergence import DivergenceGuard, TrainingDivergedError, ignorant_loss_per_token
from training.train import train

SMALL = ["--embedding-dim", "16", "--hidden-dim", "16", "--num-layers", "1", "--batch-size", "8",
         "--noise-samples", "32", "--max-epochs", "2", "--no-progress"]


@pytest.fixture(scope="module")
def models(demo_corpus, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("guard")
    general = train(tiny_config(demo_corpus, out / "general", loss="nce", max_epochs=2), progress=False)
    teacher = train(tiny_config(demo_corpus, out / "teacher", loss="ce", max_epochs=2), progress=False)
    return {"general": general.artifact_path, "teacher": teacher.artifact_path,
            **write_demo_domain(out / "domain", train=200, dev=60, test=60)}


def _command(kind: str, demo_corpus, models) -> list[str]:
    corpus = ["--train", str(demo_corpus["train"]), "--dev", str(demo_corpus["dev"])]
    if kind == "adapt":  # the init's shape: no size options
        return ["adapt", "--init", str(models["general"]), "--train", str(models["domain-train"]), "--dev",
                str(models["domain-dev"]), "--gamma", "0.5", "--batch-size", "8", "--noise-samples", "32",
                "--max-epochs", "2", "--no-progress"]
    if kind.startswith("distill"):
        return ["distill", "--teacher", str(models["teacher"]), "--loss", kind.split(":")[1], *corpus, *SMALL]
    return ["train", "--loss", kind.split(":")[1], *corpus, *SMALL]


# (command, --lr, --clip-norm): rates 30 and more, each clipped and unclipped somewhere
@pytest.mark.parametrize("kind, lr, clip", [
    ("train:ce", "30", "1"), ("train:ce", "1e6", "1e6"), ("train:nce", "1e6", "1"),
    ("adapt", "30", "1"), ("adapt", "1e6", "1e6"),
    ("distill:kl", "30", "1"), ("distill:nce-tr", "30", "1"), ("distill:tr", "1e6", "1e6"),
])
def test_an_absurd_learning_rate_exits_2_with_one_line_and_writes_no_artifact(
        demo_corpus, models, tmp_path, capsys, kind, lr, clip):
    out = tmp_path / "run"
    code = train_cli([*_command(kind, demo_corpus, models), "--out", str(out), "--lr", lr, "--clip-norm", clip])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    message = err[-1]
    assert message.startswith("rescorer-train: error: "), message
    assert f"--lr (now {float(lr):g};" in message or f"--lr (last {float(lr):g})" in message, message
    assert "epoch" in message
    assert not (out / "artifact").exists()


def test_a_healthy_run_passes_the_guard_at_the_default_rate(demo_corpus, models, tmp_path, capsys):
    for kind in ("train:ce", "train:nce", "adapt", "distill:kl", "distill:nce-tr"):
        out = tmp_path / kind.replace(":", "-")
        assert train_cli([*_command(kind, demo_corpus, models), "--out", str(out)]) == 0, capsys.readouterr().err
        assert (out / "artifact" / "config.json").exists()


def _guard(loss="ce", init=None):
    return DivergenceGuard(loss, 100, 32, Path("run/checkpoint.pt"), init)


def _epoch(epoch, loss, ppl):
    return {"epoch": epoch, "train_loss_per_token": loss, "dev_normalized_ppl": ppl}


@pytest.mark.parametrize("loss, ppl, history, init, expected", [
    (math.nan, 20.0, [], None, "training loss per token nan is not finite"),
    (3.0, math.inf, [], None, "dev perplexity inf is not finite"),
    (3.0, 201.0, [], None, "over 2 times a uniform model's (100"),
    (1.26 * math.log(100), 51.0, [], None, "over 1.25 times an ignorant model's"),
    (11 * math.log(100), 20.0, [], None, "over 1.25 times an ignorant model's"),
    (3.0, 50.0, [_epoch(1, 0.2, 40.0)], None, "15.0 times epoch 1's"),
    (3.0, 50.0, [_epoch(1, 3.0, 10.0)], None, "5.0 times epoch 1's 10"),
    (3.0, 50.0, [], 20.0, "2.5 times the init's 20"),
])
def test_each_rule_names_its_figure(loss, ppl, history, init, expected):
    guard = _guard(init=init)
    with pytest.raises(TrainingDivergedError, match=r"^training diverged in epoch 2: ") as raised:
        guard.check_epoch(2, 0.5, loss, ppl, history, 1)
    assert expected in str(raised.value) and "--lr (now 0.5; try 0.125)" in str(raised.value)
    assert "run/checkpoint.pt, epoch 1) is kept" in str(raised.value)


def test_healthy_figures_pass_and_the_nce_losses_are_measured_against_the_noise_model():
    guard = _guard()
    guard.check_epoch(1, 1.0, 0.8 * math.log(100), 99.0, [], 0)  # a poor first epoch, but learning
    guard.check_epoch(2, 1.0, 0.6 * math.log(100), 30.0, [_epoch(1, 0.8 * math.log(100), 99.0)], 1)
    guard.check_epoch(1, 1.0, 1.3 * math.log(100), 20.0, [], 0)  # a MoS start: a high loss, a good model
    noise_model = ignorant_loss_per_token("nce", 100, 32)
    assert noise_model == pytest.approx(math.log(33) + 32 * math.log(33 / 32), rel=1e-12)
    assert ignorant_loss_per_token("kl", 100, 32) == pytest.approx(math.log(100), rel=1e-12)
    _guard("nce").check_epoch(1, 1.0, 1.9 * noise_model, 60.0, [], 0)
    with pytest.raises(TrainingDivergedError, match="noise distribution's NCE loss with 32 noise samples"):
        _guard("nce-tr").check_epoch(1, 1.0, 2.1 * noise_model, 60.0, [], 0)


def test_no_artifact_from_a_run_whose_best_epoch_is_no_better_than_uniform():
    guard = _guard()
    guard.check_final([_epoch(1, 4.0, 150.0), _epoch(2, 3.9, 99.9)], 1.0)
    for history in ([_epoch(1, 4.0, 150.0), _epoch(2, 3.9, 100.0)], []):
        with pytest.raises(TrainingDivergedError, match="no model better than a uniform distribution.*no artifact"):
            guard.check_final(history, 1.0)


def test_a_run_stopped_short_of_uniform_keeps_its_checkpoint_and_resumes_to_an_artifact(demo_corpus, tmp_path, capsys):
    out = tmp_path / "run"  # one epoch of large batches: not yet better than uniform on the demo corpus
    command = ["train", "--train", str(demo_corpus["train"]), "--dev", str(demo_corpus["dev"]), "--out", str(out),
               "--loss", "nce", "--embedding-dim", "16", "--hidden-dim", "16", "--noise-samples", "16",
               "--batch-size", "64", "--no-progress"]
    assert train_cli([*command, "--max-epochs", "1"]) == 2
    assert "no model better than a uniform distribution" in capsys.readouterr().err
    assert (out / "checkpoint.pt").exists() and not (out / "artifact").exists()
    assert train_cli([*command, "--max-epochs", "6", "--resume"]) == 0, capsys.readouterr().err
    assert (out / "artifact" / "config.json").exists()
