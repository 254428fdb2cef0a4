"""Data-parallel training with two real CPU processes under torchrun (gloo)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

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


def _gradients(rank: int) -> dict[str, torch.Tensor]:
    """One rank's gradients on its own batch: a sparse embedding (rank 1 touches no row at all
    in one of the two tables), a dense layer, and a layer only rank 0 uses."""
    torch.manual_seed(0)
    first, second = torch.nn.Embedding(12, 3, sparse=True), torch.nn.Embedding(12, 3, sparse=True)
    layer, only_rank0 = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    ids = torch.tensor([[1, 4, 4, 7], [2, 2, 9, 0]][rank])
    x = first(ids) + (second(torch.tensor([5, 5])).sum(0) if rank == 0 else 0)
    y = layer(x).square().sum() + (only_rank0(x).sum() if rank == 0 else 0)
    y.backward()
    parameters = {"first": first.weight, "second": second.weight, "layer": layer.weight, "only_rank0": only_rank0.weight}
    return parameters


def _average_on_two_ranks(rank: int, init_file: str, out_dir: str) -> None:
    from training.distributed import DistributedContext, average_gradients

    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        parameters = _gradients(rank)
        average_gradients(list(parameters.values()), DistributedContext(rank, 2, rank))
        torch.save({name: p.grad.to_dense() for name, p in parameters.items()}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_gradients_are_averaged_over_ranks_as_one_process_averages_them(tmp_path):
    """Two real gloo processes with unequal sparse row counts (one rank with none in a table) and a
    parameter that only one rank uses: both end with the mean of the two ranks' gradients."""
    import torch.multiprocessing as mp

    mp.spawn(_average_on_two_ranks, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    expected = {}
    for rank in (0, 1):
        for name, p in _gradients(rank).items():
            grad = p.grad.to_dense() if p.grad is not None else torch.zeros_like(p)
            expected[name] = expected.get(name, 0) + grad / 2
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got.keys() == expected.keys()
        for name in expected:
            # a sum of two float32 terms divided by two: exact up to one rounding of the sum
            torch.testing.assert_close(got[name], expected[name], rtol=1e-6, atol=1e-7)
    assert _gradients(1)["second"].grad is None and expected["second"].abs().sum() > 0
