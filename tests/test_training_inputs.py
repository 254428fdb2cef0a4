"""Training refuses what would lose data or train silently on the wrong input: an artifact in
--out, a run already using --out, corpora changed under a resumed run, foreign checkpoints, bad
symbol tables; and honours --unk-symbol."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rescorer.artifact import load_artifact
from training.cli import main as train_cli

ROOT = Path(__file__).resolve().parents[1]
# cross-entropy: one epoch of it beats a uniform model on the demo corpus by a wide margin (the
# divergence guard writes no artifact otherwise), where NCE with 8 noise samples does not yet
SMALL = ["--loss", "ce", "--embedding-dim", "8", "--hidden-dim", "8", "--num-layers", "1", "--batch-size", "4",
         "--noise-samples", "8", "--no-progress"]


def _train(demo_corpus, out, *extra):
    return train_cli(["train", "--train", str(demo_corpus["train"]), "--dev", str(demo_corpus["dev"]),
                      "--out", str(out), "--max-epochs", "1", *SMALL, *extra])


def test_an_out_holding_an_artifact_is_refused_and_left_intact(demo_corpus, tmp_path, capsys):
    assert _train(demo_corpus, tmp_path / "run") == 0
    artifact = tmp_path / "run" / "artifact"
    before = {p.name: p.read_bytes() for p in artifact.iterdir()}
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    for out in (artifact, tmp_path / "run"):
        (tmp_path / "run" / "checkpoint.pt").unlink(missing_ok=True)
        code = train_cli(["train", "--train", str(demo_corpus["train"]), "--dev", str(empty), "--out", str(out),
                          *SMALL])
        assert code == 2 and "holds an artifact" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in artifact.iterdir()} == before
    load_artifact(artifact)  # still verifies


def test_a_second_run_on_the_same_out_is_refused_while_the_first_runs(demo_corpus, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "training.cli", "train", "--train", str(demo_corpus["train"]), "--dev",
               str(demo_corpus["dev"]), "--out", str(tmp_path / "run"), "--max-epochs", "3", *SMALL]
    first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(200):  # until the first run holds the directory
            if (tmp_path / "run" / ".lock").exists() and (tmp_path / "run" / "words.txt").exists():
                break
            import time

            time.sleep(0.05)
        second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    finally:
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert second.returncode == 2
    assert "another training run is using" in second.stderr or "checkpoint.pt exists" in second.stderr
    load_artifact(tmp_path / "run" / "artifact")


def test_resume_reads_the_same_corpora_from_any_directory_and_refuses_changed_ones(demo_corpus, tmp_path, capsys,
                                                                                    monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    for name in ("train", "dev"):
        (work / f"{name}.txt").write_text(Path(demo_corpus[name]).read_text())
    monkeypatch.chdir(work)
    assert train_cli(["train", "--train", "train.txt", "--dev", "dev.txt", "--out", str(tmp_path / "run"),
                      "--max-epochs", "1", *SMALL]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "train.txt").write_text("xyzzy plugh\n" * 50)  # the same relative name, other text
    monkeypatch.chdir(elsewhere)
    assert train_cli(["train", "--out", str(tmp_path / "run"), "--resume", "--max-epochs", "2", "--no-progress"]) == 0
    provenance = load_artifact(tmp_path / "run" / "artifact").provenance
    assert provenance["train_data"] == str(work / "train.txt") and provenance["epochs"] == 2
    capsys.readouterr()
    (work / "train.txt").write_text((work / "train.txt").read_text() + "one more line\n")
    assert train_cli(["train", "--out", str(tmp_path / "run"), "--resume", "--max-epochs", "3", "--no-progress"]) == 2
    assert "has changed since" in capsys.readouterr().err


@pytest.mark.parametrize("content", [{"format": 2}, [1, 2], {"format": 2, "config": {}, "model": {"w": 1},
                                                             "schedule": {}, "history": [], "vocab_sha256": "x"}])
def test_a_checkpoint_this_trainer_did_not_write_is_one_error(demo_corpus, tmp_path, capsys, content):
    run = tmp_path / "run"
    run.mkdir()
    torch.save(content, run / "checkpoint.pt")
    assert train_cli(["train", "--out", str(run), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "not a checkpoint of this trainer" in err and "Traceback" not in err


def test_unk_symbol_names_the_unknown_word_of_a_built_vocabulary(demo_corpus, tmp_path):
    assert _train(demo_corpus, tmp_path / "run", "--unk-symbol", "<UNK>", "--min-count", "50") == 0
    vocab = load_artifact(tmp_path / "run" / "artifact").vocab
    assert vocab.unk_symbol == "<UNK>" and "<unk>" not in vocab
    assert train_cli(["train", "--out", str(tmp_path / "run"), "--resume", "--max-epochs", "2", "--no-progress"]) == 0


@pytest.mark.parametrize("line", ["word --4", "word \u00b2", "word 1_0"])
def test_a_vocab_with_a_bad_id_is_one_error_and_leaves_nothing(demo_corpus, tmp_path, capsys, line):
    words = tmp_path / "words.txt"
    words.write_text(f"<eps> 0\n<s> 1\n</s> 2\n<unk> 3\n{line}\n")
    assert _train(demo_corpus, tmp_path / "run", "--vocab", str(words)) == 2
    err = capsys.readouterr().err
    assert "expected 'word id'" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_recentering_a_softmax_model_is_refused_and_changes_nothing(demo_corpus, tmp_path, capsys):
    assert _train(demo_corpus, tmp_path / "run", "--loss", "ce") == 0
    config = (tmp_path / "run" / "artifact" / "config.json").read_bytes()
    assert train_cli(["evaluate", str(tmp_path / "run" / "artifact"), str(demo_corpus["dev"]), "--recenter"]) == 2
    assert "--recenter shifts log_z" in capsys.readouterr().err
    assert (tmp_path / "run" / "artifact" / "config.json").read_bytes() == config
