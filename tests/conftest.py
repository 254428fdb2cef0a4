from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from training.config import TrainConfig
from training.demo_corpus import write_demo_corpus

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# two threads (the CI machine's cores); `make test-portable` sets one
torch.set_num_threads(int(os.environ.get("RESCORER_TEST_THREADS", "2")))


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory) -> dict[str, Path]:
    return write_demo_corpus(tmp_path_factory.mktemp("demo"), train=1500, dev=200, test=200)


def tiny_config(corpus: dict[str, Path], out_dir: Path, **overrides) -> TrainConfig:
    """A model small enough that an epoch on the tiny demo corpus takes a fraction of a second."""
    values = dict(train_path=str(corpus["train"]), dev_path=str(corpus["dev"]), out_dir=str(out_dir),
                  embedding_dim=32, hidden_dim=32, num_layers=1, batch_size=8, bptt=10,
                  noise_samples=32, max_epochs=2, dropout=0.1)
    values.update(overrides)
    return TrainConfig(**values)


def shared_data(relative: str) -> Path:
    path = DATA_DIR / relative
    if not path.exists():
        pytest.skip(f"real data not found at {path} (the slow tier reads ../shared/data)")
    return path


def with_other_vocabulary(artifact_dir: Path, out: Path) -> Path:
    """A copy of an artifact whose vocabulary differs in one word (same size): the input a
    vocabulary check must refuse."""
    from rescorer.artifact import load_artifact, save_artifact
    from rescorer.vocab import Vocabulary

    other = load_artifact(artifact_dir)
    words = list(other.vocab.words)
    words[-1] = "zzzz"
    other.vocab = Vocabulary(tuple(words), other.vocab.unk_symbol)
    return save_artifact(other, out)
