"""Several training corpora read in order: every batch column reads the first, then the second,
so an epoch ends on the last (the OOD+ID model of paper 1 with the in-domain data seen last)."""

from __future__ import annotations

import json

import numpy as np
import torch
from safetensors.torch import load_file

from training.batches import BpttBatches, ordered_stream
from training.cli import main as train_cli


def _corpora():
    general = np.arange(1, 1001, dtype=np.int32)  # ids below 2000: the first corpus
    in_domain = np.arange(2001, 2301, dtype=np.int32)  # ids above 2000: the last
    return general, in_domain


def test_every_column_reads_the_corpora_in_order_and_the_epoch_ends_on_the_last():
    general, in_domain = _corpora()
    batches = BpttBatches(ordered_stream([general, in_domain], 8), batch_size=8, bptt=5)
    windows = list(batches)
    columns = torch.cat([inputs for inputs, _ in windows], dim=1)  # (8, column length)
    for column in columns:
        switch = int(np.argmax(column.numpy() > 2000))
        assert (column[:switch] < 2000).all() and (column[switch:] > 2000).all()  # first, then last, once
        assert switch == len(general) // 8
    last_inputs, last_targets = windows[-1]
    assert (last_inputs > 2000).all() and (last_targets[:, :-1] > 2000).all()
    # every token of each corpus is read once (up to the remainder under one token per column)
    read = set(columns.flatten().tolist())
    assert read == set(general.tolist()) | set(in_domain[: 8 * (len(in_domain) // 8)].tolist())


def test_one_corpus_gives_the_batches_of_a_single_corpus_run_exactly():
    general, _ = _corpora()
    assert ordered_stream([general], 8) is general
    one = [(i.clone(), t.clone()) for i, t in BpttBatches(general, 8, 5)]
    again = list(BpttBatches(ordered_stream([general], 8), 8, 5))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(one, again, strict=True))


def test_data_parallel_shards_keep_the_order_in_every_column():
    general, in_domain = _corpora()
    stream = ordered_stream([general, in_domain], 4 * 2)  # batch size 4 x 2 processes
    for rank in (0, 1):
        columns = torch.cat([i for i, _ in BpttBatches(stream, 4, 5, rank, 2)], dim=1)
        for column in columns:
            switch = int(np.argmax(column.numpy() > 2000))
            assert switch > 0 and (column[switch:] > 2000).all()


def test_train_takes_corpora_in_order_and_a_resumed_run_lands_on_the_same_model(demo_corpus, tmp_path, capsys):
    from training.demo_corpus import write_demo_domain

    in_domain = write_demo_domain(tmp_path / "domain")
    domain = in_domain["domain-train"]
    common = ["--dev", str(in_domain["domain-dev"]), "--loss", "ce", "--embedding-dim", "16", "--hidden-dim", "16", "--num-layers", "1",
              "--batch-size", "8", "--noise-samples", "16", "--no-progress"]
    corpora = ["--train", str(demo_corpus["train"]), "--train", str(domain)]
    assert train_cli(["train", *corpora, "--out", str(tmp_path / "whole"), "--max-epochs", "2", *common]) == 0
    assert train_cli(["train", *corpora, "--out", str(tmp_path / "split"), "--max-epochs", "1", *common]) == 0
    assert train_cli(["train", "--out", str(tmp_path / "split"), "--resume", "--max-epochs", "2", "--no-progress"]) == 0
    whole = load_file(str(tmp_path / "whole" / "artifact" / "model.safetensors"))
    split = load_file(str(tmp_path / "split" / "artifact" / "model.safetensors"))
    assert all(torch.equal(whole[k], split[k]) for k in whole)


    stored = json.loads((tmp_path / "whole" / "artifact" / "config.json").read_text())
    assert stored["provenance"]["train_data"] == [str(demo_corpus["train"]), str(domain)]
    capsys.readouterr()
    # another order on --resume is another run: refused, naming both
    assert train_cli(["train", "--train", str(domain), "--train", str(demo_corpus["train"]), "--out",
                      str(tmp_path / "split"), "--resume", "--no-progress"]) == 2
    assert "--train" in capsys.readouterr().err


def test_train_help_documents_the_order_of_several_corpora(capsys):
    import pytest

    with pytest.raises(SystemExit):
        train_cli(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "repeat it for several corpora read in order" in text and "seen last" in text
