"""Subword LMs: sentencepiece pieces learned on the training text and kept in the artifact, words
the LM never saw scored with finite costs and no <unk>, every loss trains over pieces."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from rescorer.artifact import ArtifactError, load_artifact
from rescorer.cli import main as rescorer_cli
from rescorer.errors import ConfigError
from rescorer.sentence_scoring import score_sentences
from rescorer.subword import TOKENIZER_FILE, SubwordTokenizer, train_sentencepiece
from tests.conftest import tiny_config
from training.cli import main as train_cli
from training.corpus import iter_sentences
from training.train import train


@pytest.fixture(scope="module")
def subword_lm(demo_corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("subword") / "run"
    return train(tiny_config(demo_corpus, out, loss="nce", subword_units=120, max_epochs=1), progress=False).artifact_path


def _unseen_words(artifact, corpus) -> list[str]:
    """Words made of the corpus's letters that the corpus never holds."""
    seen = {w for words in iter_sentences(corpus["train"]) for w in words}
    letters = sorted({c for w in seen for c in w})
    made = ["".join(letters[(i * 7 + j * 3) % len(letters)] for j in range(5 + i % 3)) for i in range(12)]
    return [w for w in made if w not in seen][:6]


def test_a_subword_artifact_scores_words_it_never_saw_with_finite_costs_and_no_unk(subword_lm, demo_corpus):
    artifact = load_artifact(subword_lm)
    assert artifact.unit == "piece" and (subword_lm / TOKENIZER_FILE).exists()
    unseen = _unseen_words(artifact, demo_corpus)
    assert len(unseen) >= 3 and not any(w in artifact.vocab for w in unseen)
    sentences = [unseen[:3], ["the", *unseen[3:]], []]
    scores = score_sentences(artifact, sentences)
    assert np.all(np.isfinite(scores.log_probs)) and np.all(scores.log_probs < 0)
    assert int(scores.num_oov.sum()) == 0
    # the pieces spell the words back, and the scored lengths count pieces (more than the words)
    pieces = artifact.tokens(unseen)
    assert "".join(pieces).replace("\u2581", " ").split() == unseen
    assert scores.num_tokens[0] == len(artifact.tokens(unseen[:3])) + 1 > len(unseen[:3]) + 1
    assert artifact.token_ids(" ".join(unseen[:3])) == artifact.vocab.encode(artifact.tokens(unseen[:3]))


def test_info_shows_the_tokenizer_and_a_changed_tokenizer_is_refused(subword_lm, tmp_path, capsys):
    assert rescorer_cli(["info", str(subword_lm)]) == 0
    info = json.loads(capsys.readouterr().out)
    digest = SubwordTokenizer((subword_lm / TOKENIZER_FILE).read_bytes()).sha256
    assert info["unit"] == "piece"
    assert info["tokenizer"] == {"kind": "sentencepiece", "model_type": "bpe", "pieces": 120, "sha256": digest}
    import shutil

    copy = tmp_path / "lm"
    shutil.copytree(subword_lm, copy)
    data = bytearray((copy / TOKENIZER_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / TOKENIZER_FILE).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="tokenizer.model: sha256 does not match"):
        load_artifact(copy)
    (copy / TOKENIZER_FILE).unlink()
    with pytest.raises(ArtifactError, match="tokenizer.model: cannot read"):
        load_artifact(copy)


def test_perplexity_is_reported_per_piece_and_per_word(subword_lm, demo_corpus, capsys):
    assert train_cli(["evaluate", str(subword_lm), str(demo_corpus["test"]), "--json", "-"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out[out.index("{"):])
    words = sum(len(w) for w in iter_sentences(demo_corpus["test"]))
    sentences = report["num_sentences"]
    assert report["num_words"] == words and report["num_tokens"] - sentences >= words
    # the same log-probability over fewer units: per word is the larger perplexity
    total = report["normalized_log_prob"]
    assert report["per_word_ppl"] == pytest.approx(math.exp(-total / (words + sentences)))
    assert report["normalized_ppl"] == pytest.approx(math.exp(-total / report["num_tokens"]))
    assert report["per_word_ppl"] >= report["normalized_ppl"]


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_an_existing_sentencepiece_model_is_used_as_given(demo_corpus, tmp_path, kind):
    given = train_sentencepiece(iter_sentences(demo_corpus["train"]), 90, kind)
    (tmp_path / "asr.model").write_bytes(given.model_bytes)
    artifact = load_artifact(train(tiny_config(demo_corpus, tmp_path / "run", loss="ce", max_epochs=1,
                                               sentencepiece_model=str(tmp_path / "asr.model")),
                                   progress=False).artifact_path)
    assert artifact.tokenizer.sha256 == given.sha256 and artifact.tokenizer.kind == kind
    assert artifact.vocab.words == given.vocabulary().words
    assert artifact.model.config.output_kind == "softmax"


def test_distilled_and_adapted_students_keep_their_teachers_pieces(subword_lm, demo_corpus, tmp_path):
    teacher = load_artifact(subword_lm)
    student = load_artifact(train(tiny_config(demo_corpus, tmp_path / "student", loss="nce-tr",
                                              teacher_paths=(str(subword_lm),), max_epochs=1),
                                  progress=False).artifact_path)
    assert student.tokenizer.sha256 == teacher.tokenizer.sha256 and student.vocab == teacher.vocab
    adapted = load_artifact(train(tiny_config(demo_corpus, tmp_path / "adapted", loss="nce", init_path=str(subword_lm),
                                              reference_path=str(subword_lm), gamma=0.5, max_epochs=1),
                                  progress=False).artifact_path)
    assert adapted.tokenizer.sha256 == teacher.tokenizer.sha256
    unseen = _unseen_words(teacher, demo_corpus)
    for lm in (student, adapted):
        scores = score_sentences(lm, [unseen])
        assert np.isfinite(scores.log_probs).all() and scores.num_oov.sum() == 0


def test_a_resumed_run_cuts_words_with_the_pieces_it_began_with(demo_corpus, tmp_path):
    config = tiny_config(demo_corpus, tmp_path / "run", loss="nce", subword_units=100, max_epochs=1)
    train(config, progress=False)
    kept = (tmp_path / "run" / TOKENIZER_FILE).read_bytes()
    resumed = tiny_config(demo_corpus, tmp_path / "run", loss="nce", subword_units=100, max_epochs=2)
    artifact = load_artifact(train(resumed, resume=True, progress=False).artifact_path)
    assert artifact.tokenizer.model_bytes == kept


@pytest.mark.parametrize("values, message", [
    ({"subword_units": 100, "sentencepiece_model": "x.model"}, "give one of them"),
    ({"subword_units": 100, "vocab_size": 50}, "vocabulary is its pieces"),
    ({"subword_units": -1}, "invalid subword_units"),
    ({"subword_units": 100, "subword_kind": "wordpiece"}, "invalid subword_kind"),
])
def test_contradictory_subword_options_are_refused(demo_corpus, tmp_path, values, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(demo_corpus, tmp_path / "run", **values)


def test_lattice_rescoring_refuses_a_subword_artifact_with_a_reason(subword_lm, tmp_path, capsys):
    from tests.conftest import shared_data

    lattice = shared_data("kaldi-lattices/theanolm-lattice.txt")
    words = shared_data("kaldi-lattices/theanolm-words.txt")
    assert rescorer_cli(["lattice", "rescore", str(subword_lm), str(lattice), str(tmp_path / "out.ark"),
                         "--symbols", str(words)]) == 2
    assert "word-level artifact" in capsys.readouterr().err
    assert not (tmp_path / "out.ark").exists()


def test_an_evaluation_report_says_its_scores_are_per_piece(subword_lm, tmp_path):
    import io

    from rescorer.formats.jsonl import write_jsonl
    from tests.nbest_fixtures import tiny_utterances

    buffer = io.StringIO()
    write_jsonl(tiny_utterances(), buffer)
    (tmp_path / "lists.jsonl").write_text(buffer.getvalue())
    lists = str(tmp_path / "lists.jsonl")
    assert rescorer_cli(["eval", str(subword_lm), "--dev", lists, "--test", lists, "--out", str(tmp_path / "r"),
                         "--no-progress"]) == 0
    report = (tmp_path / "r" / "report.md").read_text()
    assert "A subword LM (120 bpe pieces" in report and "sums over each hypothesis's pieces" in report
    document = json.loads((tmp_path / "r" / "report.json").read_text())
    assert document["unit"] == "piece" and document["tokenizer"]["pieces"] == 120
