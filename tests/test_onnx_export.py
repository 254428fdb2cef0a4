"""The ONNX export: onnxruntime's nll equals `rescorer score` for word and subword, softmax,
mixture and self-normalized artifacts; a self-normalized graph has no softmax; the streaming
form carries the state; the metadata and tokens.txt are what sherpa-onnx reads."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from rescorer.artifact import Artifact, save_artifact
from rescorer.cli import main as rescorer_cli
from rescorer.model import LstmLanguageModel, ModelConfig
from rescorer.onnx_export import OnnxExportError, export_onnx
from rescorer.sentence_scoring import score_sentences
from rescorer.subword import train_sentencepiece
from rescorer.vocab import build_vocabulary
from training.corpus import count_words, iter_sentences

NORMALIZING_OPS = {"Softmax", "LogSoftmax", "ReduceLogSumExp", "Exp", "Log"}
# fp32 sums of up to ~30 log-probabilities from two LSTM implementations (PyTorch's and
# onnxruntime's kernels): each step rounds at about 1e-7 relative, so 1e-5 relative on the
# sentence (what the export promises) leaves a hundredfold margin
RELATIVE = 1e-5


def _artifact(vocab, kind: str, layers: int = 2, tokenizer=None) -> Artifact:
    torch.manual_seed(3)
    model = LstmLanguageModel(ModelConfig(vocab_size=len(vocab), embedding_dim=16, hidden_dim=24, num_layers=layers,
                                          dropout=0.0, output_kind=kind, experts=3 if kind == "mos" else 1),
                              log_z=1.7 if kind == "self_normalized" else None).eval()
    return Artifact(model, vocab, {"loss": "test"}, tokenizer=tokenizer)


@pytest.fixture(scope="module")
def sentences(demo_corpus):
    return [words for _, words in zip(range(40), iter_sentences(demo_corpus["test"]), strict=False)] + [[]]


@pytest.fixture(scope="module")
def tokenizer(demo_corpus):
    return train_sentencepiece(iter_sentences(demo_corpus["train"]), 150, "bpe")


def _word_vocab(demo_corpus):
    return build_vocabulary(count_words([demo_corpus["train"]]), max_size=60)  # some test words are <unk>


def _run_nll(path, artifact, sentences):
    ids = [artifact.token_ids(s) for s in sentences]
    x = np.zeros((len(ids), max(max(map(len, ids)), 1)), dtype=np.int64)
    for i, row in enumerate(ids):
        x[i, :len(row)] = row
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["nll"], {"x": x, "x_lens": np.array([len(r) for r in ids], dtype=np.int64)})[0]


@pytest.mark.parametrize("unit", ["word", "piece"])
@pytest.mark.parametrize("kind", ["self_normalized", "softmax", "mos"])
def test_onnxruntime_nll_equals_rescorer_score(demo_corpus, sentences, tokenizer, tmp_path, unit, kind):
    vocab = _word_vocab(demo_corpus) if unit == "word" else tokenizer.vocabulary()
    artifact = _artifact(vocab, kind, tokenizer=tokenizer if unit == "piece" else None)
    path = export_onnx(artifact, tmp_path / "lm.onnx")
    nll = _run_nll(path, artifact, sentences)
    expected = -score_sentences(artifact, sentences).log_probs
    np.testing.assert_allclose(nll, expected, rtol=RELATIVE)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    if kind == "self_normalized":  # one dot product per token minus log_z
        assert not ops & NORMALIZING_OPS
    else:
        assert ops & NORMALIZING_OPS


def test_metadata_and_the_token_table_are_what_sherpa_onnx_reads(demo_corpus, tokenizer, tmp_path):
    artifact = _artifact(tokenizer.vocabulary(), "self_normalized", layers=2, tokenizer=tokenizer)
    path = export_onnx(artifact, tmp_path / "lm.onnx")
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["num_layers"] == "2" and meta["hidden_size"] == "24"
    assert meta["sos_id"] == str(artifact.vocab.bos_id) and meta["eos_id"] == str(artifact.vocab.eos_id)
    assert meta["vocab_size"] == str(len(artifact.vocab)) and meta["unit"] == "piece"
    assert float(meta["log_z"]) == pytest.approx(1.7) and meta["tokenizer_sha256"] == tokenizer.sha256
    table = (tmp_path / "tokens.txt").read_text().splitlines()
    assert table == [f"{w} {i}" for i, w in enumerate(artifact.vocab.words)]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["x", "x_lens"]
    assert [o.name for o in session.get_outputs()] == ["nll"]


@pytest.mark.parametrize("kind", ["self_normalized", "softmax"])
def test_the_streaming_form_carries_the_state_token_by_token(demo_corpus, sentences, tmp_path, kind):
    artifact = _artifact(_word_vocab(demo_corpus), kind)
    path = export_onnx(artifact, tmp_path / "step.onnx", streaming=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    config = artifact.model.config
    for words in sentences[:5]:
        ids = artifact.token_ids(words)
        state = np.zeros((config.num_layers, 1, config.hidden_dim), dtype=np.float32)
        h, c, total = state, state, 0.0
        for token, target in zip([artifact.vocab.bos_id, *ids], [*ids, artifact.vocab.eos_id], strict=True):
            log_probs, h, c = session.run(None, {"x": np.array([[token]], dtype=np.int64), "h0": h, "c0": c})
            total += float(log_probs[0, -1, target])
        assert total == pytest.approx(float(score_sentences(artifact, [words]).log_probs[0]), rel=RELATIVE)


def test_the_cli_writes_the_graph_and_refuses_a_name_without_onnx(demo_corpus, tmp_path, capsys):
    lm_dir = save_artifact(_artifact(_word_vocab(demo_corpus), "self_normalized"), tmp_path / "lm")
    assert rescorer_cli(["export-onnx", str(lm_dir), str(tmp_path / "out" / "lm.onnx")]) == 0
    assert (tmp_path / "out" / "lm.onnx").exists() and (tmp_path / "out" / "tokens.txt").exists()
    assert "lm.onnx" in capsys.readouterr().out
    assert rescorer_cli(["export-onnx", str(lm_dir), str(tmp_path / "lm.bin")]) == 2
    assert "must end in .onnx" in capsys.readouterr().err
    with pytest.raises(OnnxExportError):
        export_onnx(_artifact(_word_vocab(demo_corpus), "softmax"), tmp_path / "x.txt")
