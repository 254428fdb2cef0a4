"""Data-parallel training with two real CPU processes under torchrun (gloo)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from rescorer.artifact import load_artifact

ROOT = Path(__file__).resolve().parents[1]


def test_two_process_training_under_torchrun_writes_one_artifact_that_learned(demo_corpus, tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
               "-m", "training.cli", "train", "--train", str(demo_corpus["train"]), "--dev", str(demo_corpus["dev"]),
               "--out", str(run), "--embedding-dim", "16", "--hidden-dim", "16", "--num-layers", "1",
               "--batch-size", "4", "--noise-samples", "16", "--max-epochs", "2", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    history = json.loads((run / "history.json").read_text())
    assert len(history) == 2 and history[1]["dev_normalized_ppl"] < history[0]["dev_normalized_ppl"]
    artifact = load_artifact(run / "artifact")
    assert artifact.provenance["epochs"] == 2


def test_a_diverging_data_parallel_run_stops_every_rank_with_a_message(demo_corpus, tmp_path):
    """A learning rate that explodes under torchrun: both ranks stop (none waits in the gradient
    exchange), the launcher exits non-zero within the timeout, and a rank names the epoch and --lr."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
               "-m", "training.cli", "train", "--train", str(demo_corpus["train"]), "--dev", str(demo_corpus["dev"]),
               "--out", str(tmp_path / "run"), "--loss", "ce", "--embedding-dim", "16", "--hidden-dim", "16",
               "--num-layers", "1", "--batch-size", "4", "--lr", "1e6", "--clip-norm", "1e6", "--max-epochs", "2",
               "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "--lr" in done.stderr and ("diverged in epoch 1" in done.stderr or "non-finite" in done.stderr), \
        done.stderr[-3000:]
    assert not (tmp_path / "run" / "artifact").exists()
