"""Rescoring a CompactLattice with a neural LM artifact (self-normalized, softmax or MoS).

The lattice is expanded so that every state knows the word history its outgoing arcs are
scored in: an expanded state is (lattice state, history), the history being the last n - 1
LM words (`ngram_order` n; 0: the whole sentence, no merging). Histories that share their last
n - 1 words are merged into one state, whose LSTM state is that of the cheapest path reaching
it (Kaldi's pruned composition approximates the same way, Xu et al., ICASSP 2018). Lattice
states are taken in topological order, so an expanded state's incoming paths are all known
before its arcs are scored, and its LSTM state is carried along the arcs (one LSTM step per
new arc word, never a sentence recomputed from its start). The words of all histories leaving
one lattice state are scored in one batch, their LSTM steps in another.

Each arc's graph cost becomes (1 - w) * graph_cost + w * nnlm_cost, nnlm_cost = -ln P(word |
history) (no softmax for a self-normalized artifact: one dot product minus log_z), and a
final state's graph cost takes the end-of-sentence cost the same way (Kaldi pytorchnn's
interpolation, `weight`). Acoustic costs and alignments are kept. Epsilon arcs and the words
in `skip_words` (silence, noise) are not scored and do not enter the history. A path's
combined cost, for choosing the cheapest path into a merged state, is graph + acoustic_scale *
acoustic. With ngram_order 0 the expanded lattice holds every path of the input exactly, so its
best path is the best of all paths rescored one by one (tests/test_lattice_rescore.py).

Pruning (`beam`, Kaldi's --lattice-compose-beam default of 6): when a lattice state's turn
comes, its histories whose combined cost exceeds the cheapest one's there by more than the beam
are dropped, with the arcs into them, and what no longer reaches a final state is trimmed.
Histories at one lattice state share all their futures (the same lattice arcs, scored in
different contexts), so their costs so far are what ranks them; the cheapest history of every
reachable state is always kept, so pruning never disconnects a lattice. Kaldi's pruned
composition ranks by an estimated total cost instead, forward plus an n-gram backward
heuristic; a per-state beam needs no heuristic and is exact at an infinite beam.

`expand_lattice` keeps each new arc's old graph cost and LM cost apart (`ExpandedLattice`), so
one expansion can be interpolated at several weights (`interpolated`); the history merges chose
their LSTM states at the expansion's own weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rescorer.artifact import Artifact
from rescorer.lattice.best_path import topological_order
from rescorer.lattice.compact_lattice import ZERO, Arc, CompactLattice, LatticeWeight, float32
from rescorer.model import token_log_probs

DEFAULT_MAX_ARCS = 2_000_000
DEFAULT_BEAM = 6.0  # Kaldi's ComposeLatticePrunedOptions::lattice_compose_beam


class LatticeTooLarge(ValueError):
    pass


@dataclass(frozen=True)
class RescoreOptions:
    weight: float = 0.5  # w: the new LM's share of the graph cost (lmrescore_pruned.sh's default)
    ngram_order: int = 4  # histories merged on their last n - 1 words; 0: exact (Kaldi's --max-ngram-order 4)
    acoustic_scale: float = 0.1  # for the cheapest path into a merged state (Kaldi's --acwt default)
    skip_words: frozenset[str] = frozenset()  # not scored, not in the history
    max_arcs: int = DEFAULT_MAX_ARCS  # of the expanded lattice: the bound on its memory
    beam: float = DEFAULT_BEAM  # histories at one lattice state kept within this much of the cheapest

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"weight must be in [0, 1], got {self.weight}")
        if self.ngram_order < 0:
            raise ValueError(f"ngram_order must be >= 0 (0: exact), got {self.ngram_order}")
        if not math.isfinite(self.acoustic_scale):
            raise ValueError(f"acoustic_scale must be finite, got {self.acoustic_scale}")
        if self.max_arcs < 1:
            raise ValueError(f"max_arcs must be >= 1, got {self.max_arcs}")
        if math.isnan(self.beam) or self.beam < 0:
            raise ValueError(f"beam must be >= 0 (inf: no pruning), got {self.beam}")


@dataclass
class _State:
    lattice_state: int
    history: tuple[int, ...]
    cost: float  # the cheapest combined cost of a path from the start to here
    lstm: tuple[torch.Tensor, torch.Tensor] | None  # (layers, 1, H) each, after the history's last word
    features: torch.Tensor | None  # (D,): the LM's output features there


@dataclass(frozen=True)
class ExpandedArc:
    word: int
    graph_cost: float  # the input arc's graph cost
    nnlm_cost: float | None  # -ln P(word | history); None: not scored (epsilon, a skip word)
    acoustic_cost: float
    alignment: tuple[int, ...]
    next_state: int


@dataclass(frozen=True)
class ExpandedFinal:
    graph_cost: float
    nnlm_cost: float  # -ln P(</s> | history)
    acoustic_cost: float
    alignment: tuple[int, ...]


@dataclass
class ExpandedLattice:
    """The lattice expanded by history, each cost kept in its parts: `interpolated(w)` is the
    rescored lattice at weight w."""

    arcs: list[list[ExpandedArc]]  # per state; state 0 is the start
    finals: list[ExpandedFinal | None]  # None: not final

    @property
    def num_arcs(self) -> int:
        return sum(len(a) for a in self.arcs)

    def interpolated(self, weight: float) -> CompactLattice:
        def mix(graph: float, nnlm: float | None) -> float:
            return graph if nnlm is None else float32((1 - weight) * graph + weight * nnlm)

        arcs = [[Arc(a.word, LatticeWeight(mix(a.graph_cost, a.nnlm_cost), a.acoustic_cost, a.alignment),
                     a.next_state) for a in out] for out in self.arcs]
        finals = [ZERO if f is None else LatticeWeight(mix(f.graph_cost, f.nnlm_cost), f.acoustic_cost, f.alignment)
                  for f in self.finals]
        return CompactLattice(0, arcs, finals)


def rescore_lattice(artifact: Artifact, lattice: CompactLattice, symbols: tuple[str, ...],
                    options: RescoreOptions = RescoreOptions()) -> CompactLattice:
    """The lattice expanded by word history, with the artifact's costs interpolated into the
    graph costs (see the module's docstring). `symbols[i]` is word id i's word (Kaldi words.txt)."""
    return expand_lattice(artifact, lattice, symbols, options).interpolated(options.weight)


@torch.inference_mode()
def expand_lattice(artifact: Artifact, lattice: CompactLattice, symbols: tuple[str, ...],
                   options: RescoreOptions = RescoreOptions()) -> ExpandedLattice:
    """The lattice expanded by word history and pruned, with every new arc's LM cost."""
    if artifact.tokenizer is not None:
        raise ValueError("lattice rescoring takes a word-level artifact (one LM token per arc); this one is a"
                         " subword LM: rescore its N-best lists (lattice-to-nbest), or train a word LM")
    model, vocab = artifact.model, artifact.vocab
    model.eval()
    device = model.device
    w, order = options.weight, options.ngram_order
    lm_ids: dict[int, int | None] = {}  # lattice word id -> the artifact's id (None: not scored)

    def lm_id(word: int) -> int | None:
        if word not in lm_ids:
            if word == 0:
                lm_ids[word] = None
            else:
                if word >= len(symbols):
                    raise ValueError(f"word id {word} is not in the symbol table ({len(symbols)} symbols)")
                text = symbols[word]
                lm_ids[word] = None if text in options.skip_words else vocab.encode([text])[0]
        return lm_ids[word]

    def key(history: tuple[int, ...]) -> tuple[int, ...]:
        return history if order == 0 else history[-(order - 1):] if order > 1 else ()

    features, lstm = model.features(torch.tensor([[vocab.bos_id]], device=device))
    states: list[_State] = [_State(lattice.start, (), 0.0, lstm, features[0, -1])]
    index: dict[tuple[int, tuple[int, ...]], int] = {(lattice.start, ()): 0}
    by_lattice_state: dict[int, list[int]] = {lattice.start: [0]}
    out_arcs: list[list[ExpandedArc]] = [[]]
    finals: list[ExpandedFinal | None] = [None]
    pruned: set[int] = set()
    total_arcs = 0

    for s in topological_order(lattice):
        expanded = by_lattice_state.get(s, [])
        if not expanded:
            continue
        cheapest = min(states[e].cost for e in expanded)
        kept = [e for e in expanded if states[e].cost <= cheapest + options.beam]
        for e in expanded:
            if states[e].cost > cheapest + options.beam:
                pruned.add(e)
                states[e].lstm = states[e].features = None
        expanded = kept
        # the LM costs of every (history, word) leaving s, and of </s> where s is final: one batch
        arcs = lattice.arcs[s]
        scored = [(e, i) for e in expanded for i, a in enumerate(arcs) if lm_id(a.word) is not None]
        final = lattice.finals[s]
        ends = expanded if not final.is_zero else []
        rows = [states[e].features for e, _ in scored] + [states[e].features for e in ends]
        targets = [lm_id(arcs[i].word) for _, i in scored] + [vocab.eos_id] * len(ends)
        costs = []
        if rows:
            costs = (-token_log_probs(model, torch.stack(rows), torch.tensor(targets, device=device))
                     .double()).tolist()
        cost_of = dict(zip(scored, costs, strict=False))
        for e, c in zip(ends, costs[len(scored):], strict=True):
            finals[e] = ExpandedFinal(final.graph_cost, c, final.acoustic_cost, final.alignment)
        # successors: new arcs, and the successors' LSTM states stepped in one batch
        steps: dict[int, tuple[int, int]] = {}  # successor -> (predecessor, word) it takes its state from
        for e in expanded:
            here = states[e]
            for i, a in enumerate(arcs):
                word = lm_id(a.word)
                nnlm = cost_of[(e, i)] if word is not None else None
                graph = a.weight.graph_cost if nnlm is None else float32((1 - w) * a.weight.graph_cost + w * nnlm)
                history = here.history if word is None else key(here.history + (word,))
                target = (a.next_state, history)
                path_cost = here.cost + graph + options.acoustic_scale * a.weight.acoustic_cost
                if target not in index:
                    index[target] = len(states)
                    states.append(_State(a.next_state, history, math.inf, None, None))
                    by_lattice_state.setdefault(a.next_state, []).append(index[target])
                    out_arcs.append([])
                    finals.append(None)
                t = index[target]
                out_arcs[e].append(ExpandedArc(a.word, a.weight.graph_cost, nnlm, a.weight.acoustic_cost,
                                               a.weight.alignment, t))
                total_arcs += 1
                if total_arcs > options.max_arcs:
                    raise LatticeTooLarge(f"the expanded lattice passes {options.max_arcs:,} arcs (--max-arcs);"
                                          " lower --ngram-order or --beam, or raise --max-arcs")
                if path_cost < states[t].cost:  # the cheapest path in gives the merged state its LSTM state
                    states[t].cost = path_cost
                    if word is None:
                        states[t].lstm, states[t].features = here.lstm, here.features
                        steps.pop(t, None)
                    else:
                        steps[t] = (e, word)
        if steps:
            targets_, sources = list(steps), list(steps.values())
            h = torch.cat([states[p].lstm[0] for p, _ in sources], dim=1)
            c = torch.cat([states[p].lstm[1] for p, _ in sources], dim=1)
            inputs = torch.tensor([[word] for _, word in sources], device=device)
            features, (h, c) = model.features(inputs, (h, c))
            for i, t in enumerate(targets_):
                states[t].lstm = (h[:, i:i + 1].contiguous(), c[:, i:i + 1].contiguous())
                states[t].features = features[i, -1]
        for e in expanded:  # done with: its LSTM state is no longer needed
            states[e].lstm = states[e].features = None
    return _trimmed(ExpandedLattice(out_arcs, finals), pruned)


def _trimmed(lattice: ExpandedLattice, pruned: set[int]) -> ExpandedLattice:
    """Without the pruned states, the arcs into them, and whatever no longer reaches a final state;
    states renumbered in their order, the start staying 0. Nothing changes where nothing was pruned."""
    if not pruned:
        return lattice
    n = len(lattice.arcs)
    into: list[list[int]] = [[] for _ in range(n)]
    for s, out in enumerate(lattice.arcs):
        if s not in pruned:
            for a in out:
                into[a.next_state].append(s)
    alive = [False] * n
    frontier = [s for s in range(n) if lattice.finals[s] is not None and s not in pruned]
    for s in frontier:
        alive[s] = True
    while frontier:
        for p in into[frontier.pop()]:
            if not alive[p]:
                alive[p] = True
                frontier.append(p)
    if not alive[0]:  # cannot happen from a lattice with a final state: the cheapest history is never pruned
        return ExpandedLattice([[]], [None])
    number = {s: i for i, s in enumerate(s for s in range(n) if alive[s])}
    arcs = [[ExpandedArc(a.word, a.graph_cost, a.nnlm_cost, a.acoustic_cost, a.alignment, number[a.next_state])
             for a in lattice.arcs[s] if alive[a.next_state]] for s in number]
    return ExpandedLattice(arcs, [lattice.finals[s] for s in number])
