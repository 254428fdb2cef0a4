"""The slow tier: real data from ../shared/data (skipped when it is absent). `make test-slow`."""

import gzip

import numpy as np
import pytest

from rescorer.combination import Weights, build_arrays
from rescorer.formats.jsonl import read_jsonl
from rescorer.formats.score_mapping import LIBRISPEECH_ESPNET
from rescorer.wer.nbest_evaluation import error_table, evaluate_set
from tests.conftest import shared_data, tiny_config
from training.train import train

pytestmark = pytest.mark.slow

# The LibriSpeech 30-best README's baseline table: 1-best, acoustic-only rerank, oracle (WER %)
README_TABLE = {"dev_clean": (1.70, 1.88, 0.59), "dev_other": (3.61, 4.04, 1.76),
                "test_clean": (1.81, 1.92, 0.67), "test_other": (3.71, 4.11, 1.83)}


@pytest.mark.parametrize("split", sorted(README_TABLE))
def test_librispeech_baseline_table_is_reproduced_exactly(split):
    utterances = read_jsonl(shared_data(f"librispeech-espnet2-hubert-30best/nbest/{split}.jsonl.gz"), LIBRISPEECH_ESPNET)
    hyps = sum(len(u.hyps) for u in utterances)
    arrays = build_arrays(utterances, np.zeros(hyps), np.zeros(hyps))
    evaluation = evaluate_set(utterances, arrays, error_table(utterances), Weights(1.0, 0.6, 0.0, 0.0), resamples=10)
    figures = (evaluation.first_pass.wer, evaluation.acoustic_only.wer, evaluation.oracle.wer)
    assert tuple(round(100 * f, 2) for f in figures) == README_TABLE[split]
    assert evaluation.rescored.errors == evaluation.first_pass.errors  # the beam score reproduces the order


def test_nce_training_on_a_slice_of_ptb_learns(tmp_path):
    source = shared_data("ptb/ptb.train.txt.gz")
    with gzip.open(source, "rt") as f:
        lines = [next(f) for _ in range(6000)]
    (tmp_path / "train.txt").write_text("".join(lines[:5000]))
    (tmp_path / "dev.txt").write_text("".join(lines[5000:]))
    corpus = {"train": tmp_path / "train.txt", "dev": tmp_path / "dev.txt"}
    result = train(tiny_config(corpus, tmp_path / "run", hidden_dim=64, embedding_dim=64, batch_size=16,
                               noise_samples=64, max_epochs=2), progress=False)
    ppls = [r["dev_normalized_ppl"] for r in result.history]
    assert ppls[1] < ppls[0] < 2000
    assert abs(result.final_dev["log_z_mean"]) < 1.0
