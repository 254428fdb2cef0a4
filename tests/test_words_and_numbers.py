"""One rule for words (ASCII whitespace, as Kaldi) and one for numbers (finite decimals) on
every path: readers, training text, symbol tables, scoring, WER, writers."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rescorer.artifact import save_artifact
from rescorer.cli import main as rescorer_cli
from rescorer.nbest import Hypothesis, NbestError
from rescorer.vocab import VocabularyError, build_vocabulary, parse_symbol_table
from rescorer.wer.counts import compute_wer
from rescorer.words import split_words
from tests.nbest_fixtures import tiny_artifact

UNICODE_SPACES = ["\u00a0", "\u2028", "\u0085", "\u3000", "\u202f", "\x1c", "\x1d", "\x1e", "\x1f"]


@pytest.mark.parametrize("space", UNICODE_SPACES)
def test_a_unicode_space_stays_inside_its_word_everywhere(space, tmp_path):
    text = f"the{space}cook bakes"
    assert split_words(text) == [f"the{space}cook", "bakes"] == Hypothesis(text, 0.0).words
    assert compute_wer(["the cook bakes"], [text]).errors == 2  # as Kaldi's compute-wer counts it
    # a vocabulary holding such a word is written and read back
    vocab = build_vocabulary({f"the{space}cook": 2, "bakes": 1})
    again = parse_symbol_table(vocab.to_text(), "words.txt")
    assert again.words == vocab.words


def test_training_on_text_with_unicode_spaces_writes_an_artifact_every_tool_loads(tmp_path, capsys):
    from rescorer.artifact import load_artifact
    from training.cli import main as train_cli

    lines = [f"the{s}cook bakes bread" for s in UNICODE_SPACES] + ["a sailor ties a net"] * 20
    (tmp_path / "train.txt").write_text("\n".join(lines * 5) + "\n")
    (tmp_path / "dev.txt").write_text("\n".join(lines) + "\n")
    assert train_cli(["train", "--train", str(tmp_path / "train.txt"), "--dev", str(tmp_path / "dev.txt"),
                      "--out", str(tmp_path / "run"), "--loss", "ce", "--embedding-dim", "8", "--hidden-dim", "8",
                      "--num-layers", "1", "--batch-size", "2", "--max-epochs", "1", "--no-progress"]) == 0
    artifact = load_artifact(tmp_path / "run" / "artifact")
    assert "the\u00a0cook" in artifact.vocab
    assert rescorer_cli(["info", str(tmp_path / "run" / "artifact")]) == 0


def test_kaldi_paths_and_rescore_rank_a_unicode_space_list_alike(tmp_path):
    from rescorer.formats.kaldi import read_words_archive

    (tmp_path / "words").write_text("u-1\tthe\u00a0cook bakes\nu-2 the cook bakes\n")
    assert read_words_archive(tmp_path / "words") == {"u-1": ["the\u00a0cook", "bakes"],
                                                      "u-2": ["the", "cook", "bakes"]}


@pytest.mark.parametrize("line", ["a --4", "a \u00b2", "a 1_0", "a -1", "a \u0663"])
def test_symbol_table_ids_are_ascii_integers(line):
    with pytest.raises(VocabularyError, match="expected 'word id'"):
        parse_symbol_table(f"<eps> 0\n{line}\n", "words.txt")


def test_literal_sentence_boundaries_in_text_are_unknown_words_not_boundaries():
    vocab = build_vocabulary({"a": 2, "b": 1})
    assert vocab.encode(["a", "<s>", "b", "</s>"]) == [vocab.id_of("a"), vocab.unk_id, vocab.id_of("b"), vocab.unk_id]
    with pytest.raises(VocabularyError, match="cannot be the sentence boundary"):
        parse_symbol_table("<s> 0\n</s> 1\na 2\n", "words.txt", unk_symbol="<s>")


@pytest.mark.parametrize("cost", ["nan", "-inf", "inf", "1_0", "\u0661", "0x10", "1e999"])
def test_nnlm_costs_that_are_not_finite_decimals_are_refused(cost, tmp_path, capsys):
    lm_dir = save_artifact(tiny_artifact(), tmp_path / "lm")
    (tmp_path / "nbest.jsonl").write_text(json.dumps(
        {"utt_id": "u", "ref": "the cat", "hyps": [{"text": "the cat", "am_score": -1.0},
                                                  {"text": "a cat", "am_score": -2.0}]}) + "\n")
    (tmp_path / "costs").write_text(f"u-1 {cost}\nu-2 5\n")
    assert rescorer_cli(["rescore", str(lm_dir), str(tmp_path / "nbest.jsonl"), "--nnlm-costs",
                         str(tmp_path / "costs")]) == 2
    assert "u-1" in capsys.readouterr().err


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_inputs_refuse_non_finite_constants(constant, tmp_path):
    from rescorer.formats.jsonl import read_jsonl

    record = '{"utt_id": "u", "hyps": [{"text": "a", "am_score": CONSTANT}]}\n'
    (tmp_path / "n.jsonl").write_text(record.replace("CONSTANT", constant))
    with pytest.raises(NbestError, match="scores must be finite"):
        read_jsonl(tmp_path / "n.jsonl")


def test_input_fields_never_replace_the_computed_scores_in_written_lists(tmp_path):
    lm_dir = save_artifact(tiny_artifact(), tmp_path / "lm")
    record = {"utt_id": "u", "ref": "the cat", "hyps": [
        {"text": "the cat", "am_score": -1.0, "nnlm_score": "high", "total": "best", "rank": "first"},
        {"text": "a cat", "am_score": -2.0}]}
    (tmp_path / "n.jsonl").write_text(json.dumps(record) + "\n")
    assert rescorer_cli(["rescore", str(lm_dir), str(tmp_path / "n.jsonl"), "--out-jsonl", str(tmp_path / "o.jsonl")]) == 0
    written = json.loads((tmp_path / "o.jsonl").read_text())
    for hyp in written["hyps"]:
        assert isinstance(hyp["nnlm_score"], float) and isinstance(hyp["total"], float)
        assert isinstance(hyp["rank"], int)


def test_the_tiny_artifact_scores_literal_boundaries_as_unknown(tmp_path):
    from rescorer.sentence_scoring import score_sentences

    artifact = tiny_artifact()
    literal = score_sentences(artifact, [["the", "</s>", "cat"]])
    unknown = score_sentences(artifact, [["the", "<unk>", "cat"]])
    assert literal.log_probs[0] == pytest.approx(unknown.log_probs[0]) and literal.num_oov[0] == 1


def test_convert_to_kaldi_into_a_used_directory_leaves_no_stale_files(tmp_path):
    from rescorer.formats.reader import NbestSource, read_nbest

    with_lm = {"utt_id": "u", "ref": "a b", "hyps": [{"text": "a b", "am_score": -1.0, "lm_score": -2.0}]}
    without = {"utt_id": "v", "hyps": [{"text": "c", "am_score": -3.0}]}
    for record in (with_lm, without):
        (tmp_path / "n.jsonl").write_text(json.dumps(record) + "\n")
        assert rescorer_cli(["convert", str(tmp_path / "n.jsonl"), "--to", "kaldi", str(tmp_path / "k")]) == 0
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == ["acwt", "words_text"]
    (back,) = read_nbest(NbestSource(str(tmp_path / "k"), "kaldi"))
    assert back.utt_id == "v" and back.hyps[0].lm_score is None and back.ref is None


def test_eval_with_references_that_hold_no_words_is_one_error_and_writes_nothing(tmp_path, capsys):
    lm_dir = save_artifact(tiny_artifact(), tmp_path / "lm")
    (tmp_path / "n.jsonl").write_text(json.dumps({"utt_id": "u", "ref": "", "hyps": [
        {"text": "the cat", "am_score": -1.0}, {"text": "", "am_score": -2.0}]}) + "\n")
    assert rescorer_cli(["eval", str(lm_dir), "--dev", str(tmp_path / "n.jsonl"), "--test", str(tmp_path / "n.jsonl"),
                         "--out", str(tmp_path / "rep"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "references hold no words" in err and "Traceback" not in err
    assert not (tmp_path / "rep").exists()


def test_the_bootstrap_draws_in_blocks_the_same_interval_as_in_one_draw(monkeypatch):
    import numpy as np

    import rescorer.wer.bootstrap as bootstrap

    rng = np.random.default_rng(3)
    base, new, words = rng.integers(0, 4, 500), rng.integers(0, 4, 500), rng.integers(3, 20, 500)
    whole = bootstrap.paired_bootstrap(base, new, words, 300)
    monkeypatch.setattr(bootstrap, "BLOCK_ELEMENTS", 500 * 7)  # 7 resamples per block
    assert bootstrap.paired_bootstrap(base, new, words, 300) == whole


def test_the_recipes_path_and_rescore_rank_a_unicode_space_list_alike(tmp_path):
    """`rescorer score` on the words, then `rescore --nnlm-costs`, as the Kaldi recipe runs it,
    and `rescore --format kaldi` scoring the same directory itself choose the same 1-best."""
    lm_dir = save_artifact(tiny_artifact(), tmp_path / "lm")
    kaldi = tmp_path / "kaldi"
    kaldi.mkdir()
    (kaldi / "words_text").write_text("u-1 the\u00a0cat sat\nu-2 the cat sat\nu-3 a\u3000dog\n")
    (kaldi / "acwt").write_text("u-1 10\nu-2 10.5\nu-3 9\n")
    (kaldi / "lmwt.withlm").write_text("u-1 3\nu-2 3\nu-3 4\n")
    (tmp_path / "text").write_text("u the cat sat\n")
    assert rescorer_cli(["score", str(lm_dir), str(kaldi / "words_text"), str(tmp_path / "costs")]) == 0
    outputs = {}
    for name, extra in (("recipe", ["--nnlm-costs", str(tmp_path / "costs")]), ("direct", [])):
        assert rescorer_cli(["rescore", str(lm_dir), str(kaldi), "--format", "kaldi", "--ref", str(tmp_path / "text"),
                             "--lm-weight", "1", "--interp-weight", "1", "--out-text", str(tmp_path / name),
                             "--out-jsonl", str(tmp_path / f"{name}.jsonl"), *extra]) == 0
        outputs[name] = (tmp_path / name).read_text()
        ranked = json.loads((tmp_path / f"{name}.jsonl").read_text())["hyps"]
        outputs[name + " scores"] = [round(h["nnlm_score"], 4) for h in ranked]
    assert outputs["recipe"] == outputs["direct"]
    assert outputs["recipe scores"] == outputs["direct scores"]


def test_the_fast_split_knows_every_character_python_alone_counts_as_whitespace():
    from rescorer.words import PYTHON_ONLY_WHITESPACE

    python_rule = {chr(c) for c in range(0x110000) if chr(c).isspace()} - set(" \t\n\r\x0b\x0c")
    assert set(PYTHON_ONLY_WHITESPACE) == python_rule


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "ü", "猫", " ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1f", "\x85",
                                 "\xa0", "\u2028", "\u3000", "\u202f", ""]), max_size=30).map("".join))
def test_split_words_splits_on_ascii_whitespace_only_on_both_paths(text):
    import re

    expected = [field for field in re.split(r"[ \t\n\r\x0b\x0c]+", text) if field]
    assert split_words(text) == expected
