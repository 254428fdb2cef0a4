"""N-best lists merged into lattices: the lattice's paths are exactly the hypotheses, with their costs."""

from __future__ import annotations

import io

import pytest

from rescorer.cli import main as rescorer_cli
from rescorer.formats.jsonl import write_jsonl
from rescorer.lattice import read_lattices
from rescorer.lattice.best_path import best_path
from rescorer.lattice.from_nbest import count_paths, lattice_from_nbest
from rescorer.vocab import read_symbol_table
from tests.nbest_fixtures import tiny_utterances
from tests.test_lattice_best_path import every_path


@pytest.mark.parametrize("scale", [1.0, 0.1])
def test_the_paths_are_the_hypotheses_and_the_best_path_is_the_first_pass_combination(scale):
    for utt in tiny_utterances():
        ids = {"<eps>": 0}
        lattice = lattice_from_nbest(utt, ids)
        words = {i: w for w, i in ids.items()}
        paths = sorted((" ".join(words[w] for w in ws), round(c, 3)) for c, ws in every_path(lattice, scale))
        expected = sorted((h.text, round(-(h.lm_score + scale * h.am_score), 3)) for h in utt.hyps)
        assert paths == expected
        best = max(utt.hyps, key=lambda h: h.lm_score + scale * h.am_score)
        assert " ".join(words[w] for w in best_path(lattice, scale).words) == best.text
    shared = lattice_from_nbest(tiny_utterances()[0], {"<eps>": 0})  # "the cat sat" shared by 3 hypotheses
    assert shared.num_arcs < sum(len(h.words) + 1 for h in tiny_utterances()[0].hyps)


def test_from_nbest_writes_an_archive_and_its_symbol_table(tmp_path):
    buffer = io.StringIO()
    write_jsonl(tiny_utterances(), buffer)
    (tmp_path / "lists.jsonl").write_text(buffer.getvalue())
    assert rescorer_cli(["lattice", "from-nbest", str(tmp_path / "lists.jsonl"), str(tmp_path / "lat.ark.gz"),
                         "--write-symbols", str(tmp_path / "words.txt")]) == 0
    lattices = read_lattices(tmp_path / "lat.ark.gz")
    symbols = read_symbol_table(tmp_path / "words.txt").words
    assert [k for k, _ in lattices] == ["u1", "u2"] and symbols[0] == "<eps>"
    texts = {" ".join(symbols[w] for w in ws) for _, ws in every_path(lattices[0][1], 1.0)}
    assert texts == {h.text for h in tiny_utterances()[0].hyps}


def _with_word_scores(text: str, am: list[float], lm: list[float]):
    from rescorer.nbest import Hypothesis

    return Hypothesis(text, sum(am), sum(lm), extra={"word_am_scores": am, "word_lm_scores": lm})


def test_per_word_scores_merge_shared_segments_into_new_paths_and_keep_every_hypothesis():
    from rescorer.nbest import Utterance

    # h2 shares its first word (same segment, same context) with h1, h3 its last two with h2:
    # h3's beginning then meets h1's end, a path no list holds
    hyps = [_with_word_scores("a b c", [-10.0, -20.0, -30.0, -1.0], [-1.0, -2.0, -3.0, -0.5]),
            _with_word_scores("a d e", [-10.0, -21.0, -31.0, -1.5], [-1.0, -2.5, -3.5, -0.25]),
            _with_word_scores("f d e", [-9.0, -21.0, -31.0, -1.5], [-4.0, -2.5, -3.5, -0.25])]
    utt = Utterance("u", hyps)
    ids = {"<eps>": 0}
    lattice = lattice_from_nbest(utt, ids)
    words = {i: w for w, i in ids.items()}
    paths = {" ".join(words[w] for w in ws): round(c, 3) for c, ws in every_path(lattice, 0.1)}
    assert set(paths) == {"a b c", "a d e", "f d e", "f b c"}
    for h in hyps:  # every hypothesis with exactly its own scores
        assert paths[h.text] == round(-(h.lm_score + 0.1 * h.am_score), 3)
    assert paths["f b c"] == round(4.0 + 2.0 + 3.0 + 0.5 + 0.1 * (9.0 + 20.0 + 30.0 + 1.0), 3)
    assert count_paths(lattice) == 4


def test_the_same_word_with_other_scores_is_another_segment_and_is_not_merged():
    from rescorer.nbest import Utterance

    hyps = [_with_word_scores("a b", [-10.0, -20.0, -1.0], [-1.0, -2.0, -0.5]),
            _with_word_scores("a b", [-10.0, -25.0, -1.0], [-1.0, -2.0, -0.5])]  # b over other frames
    lattice = lattice_from_nbest(Utterance("u", hyps), {"<eps>": 0})
    assert count_paths(lattice) == 2 and lattice.num_arcs == 3  # a shared, b twice


def test_per_word_scores_of_the_wrong_length_or_half_given_are_refused():
    from rescorer.nbest import Hypothesis, NbestError, Utterance

    bad = Utterance("u", [_with_word_scores("a b", [-1.0, -2.0], [-1.0, -2.0])])
    with pytest.raises(NbestError, match="hypothesis 1: word_am_scores must be a list of 3 numbers"):
        lattice_from_nbest(bad, {"<eps>": 0})
    half = Utterance("u", [Hypothesis("a", -1.0, -1.0, extra={"word_am_scores": [-1.0, 0.0]})])
    with pytest.raises(NbestError, match="word_am_scores without word_lm_scores"):
        lattice_from_nbest(half, {"<eps>": 0})
    # some hypotheses without per-word scores: the whole list as a prefix tree of its hypotheses
    mixed = Utterance("u", [_with_word_scores("a b", [-1.0, -2.0, 0.0], [-1.0, -2.0, 0.0]),
                            Hypothesis("a c", -3.0, -3.0)])
    lattice = lattice_from_nbest(mixed, {"<eps>": 0})
    assert count_paths(lattice) == 2 and sum(1 for out in lattice.arcs for a in out if a.word == 0) == 2
