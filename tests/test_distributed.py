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
