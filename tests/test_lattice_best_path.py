"""The best path of a lattice: the cheapest of all its paths, found one by one."""

from __future__ import annotations

import math

import pytest

from rescorer.cli import main as rescorer_cli
from rescorer.lattice import Arc, CompactLattice, LatticeWeight, read_lattices, write_lattices
from rescorer.lattice.best_path import best_path, scaled_cost
from rescorer.lattice.compact_lattice import ZERO
from tests.conftest import shared_data


def every_path(lattice: CompactLattice, scale: float):
    """(cost, words) of every path from the start to a final state, by depth-first enumeration."""
    out = []

    def walk(state, cost, words):
        final = lattice.finals[state]
        if not final.is_zero:
            out.append((cost + scaled_cost(final, scale), [w for w in words if w]))
        for arc in lattice.arcs[state]:
            walk(arc.next_state, cost + scaled_cost(arc.weight, scale), [*words, arc.word])

    walk(lattice.start, 0.0, [])
    return out


@pytest.mark.parametrize("scale", [1.0, 0.1, 0.0, 10.0])
def test_the_best_path_is_the_cheapest_of_all_paths_of_the_real_lattice(scale):
    ((_, lattice),) = read_lattices(shared_data("kaldi-lattices/theanolm-lattice.txt"))
    paths = every_path(lattice, scale)
    assert len(paths) > 20
    found = best_path(lattice, scale)
    cheapest = min(cost for cost, _ in paths)
    assert found.cost == pytest.approx(cheapest, rel=1e-12)  # the same float sums in another order
    assert any(words == found.words and cost == pytest.approx(cheapest, rel=1e-12) for cost, words in paths)


def test_best_path_prints_words_as_lattice_best_path_and_int2sym_do(tmp_path, capsys):
    lattices = shared_data("kaldi-lattices/theanolm-lattice.txt")
    words = shared_data("kaldi-lattices/theanolm-words.txt")
    assert rescorer_cli(["lattice", "best-path", str(lattices), "--symbols", str(words)]) == 0
    assert capsys.readouterr().out == "utterance-123 it didn't elaborate\n"
    assert rescorer_cli(["lattice", "best-path", str(lattices)]) == 0
    assert capsys.readouterr().out == "utterance-123 11 7 9\n"
    (tmp_path / "few.txt").write_text("<eps> 0\nit 1\n")
    assert rescorer_cli(["lattice", "best-path", str(lattices), "--symbols", str(tmp_path / "few.txt")]) == 2
    assert "word id 11 is not in" in capsys.readouterr().err


def test_a_cyclic_lattice_and_a_lattice_without_a_reachable_final_state(tmp_path, capsys):
    w = LatticeWeight(1.0, 1.0)
    cyclic = CompactLattice(0, [[Arc(1, w, 1)], [Arc(2, w, 0)]], [ZERO, w])
    write_lattices([("loop", cyclic)], tmp_path / "loop.ark", binary=False)
    assert rescorer_cli(["lattice", "best-path", str(tmp_path / "loop.ark")]) == 2
    assert "lattice 'loop': the lattice has a cycle" in capsys.readouterr().err
    dead_end = CompactLattice(0, [[Arc(1, w, 1)], [], []], [ZERO, ZERO, w])
    assert best_path(dead_end).cost == math.inf and best_path(dead_end).words == []


@pytest.mark.parametrize("penalty", [-20.0, 5.0, 40.0])
def test_a_word_penalty_adds_its_cost_per_word_and_changes_which_path_is_best(penalty):
    ((_, lattice),) = read_lattices(shared_data("kaldi-lattices/theanolm-lattice.txt"))
    paths = [(cost + penalty * len(words), words) for cost, words in every_path(lattice, 0.1)]
    found = best_path(lattice, 0.1, word_penalty=penalty)
    cheapest = min(cost for cost, _ in paths)
    assert found.cost == pytest.approx(cheapest, rel=1e-9)
    assert any(words == found.words and cost == pytest.approx(cheapest, rel=1e-9) for cost, words in paths)


def test_word_penalties_reach_paths_of_other_lengths():
    ((_, lattice),) = read_lattices(shared_data("kaldi-lattices/theanolm-lattice.txt"))
    lengths = {len(best_path(lattice, 0.1, word_penalty=p).words) for p in (-200.0, 0.0, 200.0)}
    assert len(lengths) > 1
