"""N-best lists merged into lattices: the lattice's paths are exactly the hypotheses, with their costs."""

from __future__ import annotations

import io

import pytest

from rescorer.cli import main as rescorer_cli
from rescorer.formats.jsonl import write_jsonl
from rescorer.lattice import read_lattices
from rescorer.lattice.best_path import best_path
from rescorer.lattice.from_nbest import lattice_from_nbest
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
