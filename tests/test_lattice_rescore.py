"""Lattice rescoring: exact at n-gram order 0 (the best path of the rescored lattice is the best
of all its paths rescored one by one), merged histories at finite orders, bounded size."""

from __future__ import annotations

import math

import pytest
import torch

from rescorer.artifact import Artifact
from rescorer.lattice import read_lattices
from rescorer.lattice.best_path import best_path, topological_order
from rescorer.lattice.rescore import LatticeTooLarge, RescoreOptions, expand_lattice, rescore_lattice
from rescorer.model import LstmLanguageModel, ModelConfig
from rescorer.sentence_scoring import score_sentences
from rescorer.vocab import build_vocabulary, read_symbol_table
from tests.conftest import shared_data
from tests.test_lattice_best_path import every_path


def _artifact(words, kind: str, seed: int = 0) -> Artifact:
    torch.manual_seed(seed)
    vocab = build_vocabulary({w: 100 - i for i, w in enumerate(words)})
    model = LstmLanguageModel(ModelConfig(vocab_size=len(vocab), embedding_dim=12, hidden_dim=12, num_layers=2,
                                          dropout=0.0, output_kind=kind, experts=2 if kind == "mos" else 1)).eval()
    return Artifact(model, vocab, {"loss": "test"})


@pytest.fixture(scope="module")
def real():
    ((_, lattice),) = read_lattices(shared_data("kaldi-lattices/theanolm-lattice.txt"))
    symbols = read_symbol_table(shared_data("kaldi-lattices/theanolm-words.txt")).words
    return lattice, symbols


@pytest.mark.parametrize("kind", ["self_normalized", "softmax", "mos"])
@pytest.mark.parametrize("weight", [0.5, 1.0])
def test_order_0_finds_the_best_of_every_path_rescored_one_by_one(real, kind, weight):
    lattice, symbols = real
    skip = {"!SIL"}
    artifact = _artifact([w for w in symbols if w not in ("<eps>", "!SIL")][:8], kind)  # some words are <unk>
    scale = 0.1
    rescored = rescore_lattice(artifact, lattice, symbols, RescoreOptions(weight=weight, ngram_order=0, beam=math.inf,
                                                                           acoustic_scale=scale,
                                                                           skip_words=frozenset(skip)))
    # every path of the input, its words scored as a sentence by the N-best scorer
    paths = every_path(lattice, scale)
    texts = [[symbols[w] for w in words if symbols[w] not in skip] for _, words in paths]
    nnlm_costs = -score_sentences(artifact, texts).log_probs
    # cost = (1 - w) graph + w nnlm + scale * acoustic; every_path gave graph + scale * acoustic
    graph_only = [g for g, _ in every_path(_with_acoustic_zero(lattice), 0.0)]
    totals = [cost - graph + (1 - weight) * graph + weight * lm
              for (cost, _), graph, lm in zip(paths, graph_only, nnlm_costs, strict=True)]
    best = min(range(len(paths)), key=totals.__getitem__)
    found = best_path(rescored, scale)
    assert found.cost == pytest.approx(totals[best], rel=1e-4, abs=1e-3)  # float32 costs, stepwise LSTM
    assert [symbols[w] for w in found.words] == [symbols[w] for w in paths[best][1]]
    assert len(every_path(rescored, scale)) == len(paths)  # exact: no path merged, none lost


def _with_acoustic_zero(lattice):
    from dataclasses import replace as dc_replace

    from rescorer.lattice import Arc, CompactLattice

    return CompactLattice(lattice.start, [[Arc(a.word, dc_replace(a.weight, acoustic_cost=0.0), a.next_state)
                                           for a in arcs] for arcs in lattice.arcs],
                          [dc_replace(f, acoustic_cost=0.0) if not f.is_zero else f for f in lattice.finals])


def test_merging_histories_shrinks_the_lattice_and_weight_0_keeps_the_graph_costs(real):
    lattice, symbols = real
    artifact = _artifact(symbols[2:10], "self_normalized")
    sizes = {n: rescore_lattice(artifact, lattice, symbols, RescoreOptions(ngram_order=n, beam=math.inf)).num_states
             for n in (0, 4, 2, 1)}
    assert sizes[0] >= sizes[4] >= sizes[2] >= sizes[1] == lattice.num_states
    unchanged = rescore_lattice(artifact, lattice, symbols, RescoreOptions(weight=0.0, ngram_order=1))
    assert best_path(unchanged, 0.1).words == best_path(lattice, 0.1).words
    assert best_path(unchanged, 0.1).cost == pytest.approx(best_path(lattice, 0.1).cost, rel=1e-6)


def test_the_expanded_lattice_is_bounded(real):
    lattice, symbols = real
    with pytest.raises(LatticeTooLarge, match="--max-arcs"):
        rescore_lattice(_artifact(symbols[2:10], "softmax"), lattice, symbols, RescoreOptions(ngram_order=0,
                                                                                             max_arcs=40,
                                                                                             beam=math.inf))


@pytest.mark.parametrize("order", [1, 2, 3, 4, 0])
def test_each_expanded_state_is_one_lattice_state_and_the_last_n_minus_1_words_into_it(real, order):
    lattice, symbols = real
    artifact = _artifact([w for w in symbols if w not in ("<eps>", "!SIL")], "self_normalized")
    rescored = rescore_lattice(artifact, lattice, symbols, RescoreOptions(ngram_order=order, beam=math.inf,
                                                                           skip_words=frozenset({"!SIL"})))
    seen = set()

    def walk(state, history):  # every path prefix, by depth-first enumeration
        seen.add((state, history if order == 0 else history[max(len(history) - (order - 1), 0):]))
        for arc in lattice.arcs[state]:
            word = symbols[arc.word]
            walk(arc.next_state, history if arc.word == 0 or word == "!SIL" else (*history, word))

    walk(lattice.start, ())
    assert rescored.num_states == len(seen)


def test_the_cli_rescores_an_archive_as_the_library_does(real, tmp_path, capsys):
    from rescorer.artifact import save_artifact
    from rescorer.cli import main as rescorer_cli

    lattice, symbols = real
    artifact = _artifact(symbols[2:10], "self_normalized")
    lm_dir = save_artifact(artifact, tmp_path / "lm")
    words = shared_data("kaldi-lattices/theanolm-words.txt")
    args = ["lattice", "rescore", str(lm_dir), str(shared_data("kaldi-lattices/theanolm-lattice.txt")),
            str(tmp_path / "out.ark.gz"), "--symbols", str(words), "--ngram-order", "3", "--weight", "0.7",
            "--skip-words", "!SIL"]
    assert rescorer_cli(args) == 0
    ((key, got),) = read_lattices(tmp_path / "out.ark.gz")
    want = rescore_lattice(artifact, lattice, symbols, RescoreOptions(weight=0.7, ngram_order=3,
                                                                      skip_words=frozenset({"!SIL"})))
    assert key == "utterance-123" and got.same_as(want)
    assert rescorer_cli([*args[:-2], "--weight", "1.5"]) == 2
    assert "weight must be in [0, 1]" in capsys.readouterr().err


def _connected(lattice) -> bool:
    """Every state is reached from the start and reaches a final state."""
    order = topological_order(lattice)
    reaches = {s for s in range(lattice.num_states) if not lattice.finals[s].is_zero}
    for s in reversed(order):
        if any(a.next_state in reaches for a in lattice.arcs[s]):
            reaches.add(s)
    return len(order) == lattice.num_states and reaches == set(range(lattice.num_states))


@pytest.mark.parametrize("order", [0, 3])
def test_a_narrower_beam_keeps_fewer_histories_and_the_lattice_connected(order):
    ((_, lattice),) = read_lattices(shared_data("kaldi-lattices/kgraph-lat.txt"))
    symbols = tuple(f"w{i}" for i in range(max(a.word for out in lattice.arcs for a in out) + 1))
    artifact = _artifact([f"w{i}" for i in sorted({a.word for out in lattice.arcs for a in out} - {0})][:40],
                         "self_normalized")
    sizes = {}
    for beam in (math.inf, 8.0, 2.0, 0.0):
        options = RescoreOptions(ngram_order=order, beam=beam, acoustic_scale=0.1)
        rescored = rescore_lattice(artifact, lattice, symbols, options)
        assert _connected(rescored)
        sizes[beam] = rescored.num_arcs
        if beam == 0.0:  # one history per lattice state: no more states than the input has
            assert rescored.num_states <= lattice.num_states
    assert sizes[math.inf] >= sizes[8.0] >= sizes[2.0] >= sizes[0.0]
    assert sizes[math.inf] > sizes[0.0]  # the beam did prune


def test_pruning_keeps_the_best_path_when_it_stays_within_the_beam(real):
    lattice, symbols = real
    artifact = _artifact(symbols[2:10], "mos")
    exact = rescore_lattice(artifact, lattice, symbols, RescoreOptions(ngram_order=0, beam=math.inf))
    pruned = rescore_lattice(artifact, lattice, symbols, RescoreOptions(ngram_order=0, beam=6.0))
    assert pruned.num_arcs < exact.num_arcs
    assert best_path(pruned, 0.1).words == best_path(exact, 0.1).words
    assert best_path(pruned, 0.1).cost == pytest.approx(best_path(exact, 0.1).cost, rel=1e-6)


def test_one_expansion_interpolates_at_any_weight_as_rescoring_at_that_weight(real):
    lattice, symbols = real
    artifact = _artifact(symbols[2:10], "softmax")
    expanded = expand_lattice(artifact, lattice, symbols, RescoreOptions(ngram_order=0, beam=math.inf))
    for weight in (0.0, 0.3, 1.0):  # exact expansion: no merge depends on the weight
        want = rescore_lattice(artifact, lattice, symbols, RescoreOptions(weight=weight, ngram_order=0,
                                                                          beam=math.inf))
        assert expanded.interpolated(weight).same_as(want)


@pytest.mark.parametrize("beam", [-1.0, math.nan])
def test_a_negative_or_nan_beam_is_refused(beam):
    with pytest.raises(ValueError, match="beam must be >= 0"):
        RescoreOptions(beam=beam)
