"""The best path of a CompactLattice, as Kaldi's `lattice-best-path` finds it.

A path's cost is the sum over its arcs and its final state of lm_scale * graph_cost +
acoustic_scale * acoustic_cost (Kaldi's `--lm-scale`, `--acoustic-scale`, both 1 by default),
plus `word_penalty` per word arc (what Kaldi's `lattice-add-penalty --word-ins-penalty` adds
before scoring; 0 by default).
Lattices are acyclic (Kaldi's decoders write them so), and costs may be negative (acoustic
costs often are), so the search is one pass in topological order, not Dijkstra's; a lattice
with a cycle is refused. Ties go to the arc met first (state order, then arc order).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from rescorer.lattice.compact_lattice import CompactLattice, LatticeWeight


class LatticeCycleError(ValueError):
    pass


@dataclass(frozen=True)
class BestPath:
    words: list[int]  # word ids, epsilons (0) left out
    cost: float  # +inf: no final state is reachable


def scaled_cost(weight: LatticeWeight, acoustic_scale: float, lm_scale: float = 1.0) -> float:
    return lm_scale * weight.graph_cost + acoustic_scale * weight.acoustic_cost


def topological_order(lattice: CompactLattice) -> list[int]:
    """The states reachable from the start, every arc's source before its destination."""
    reachable, frontier = {lattice.start}, [lattice.start]
    while frontier:
        state = frontier.pop()
        for arc in lattice.arcs[state]:
            if arc.next_state not in reachable:
                reachable.add(arc.next_state)
                frontier.append(arc.next_state)
    incoming = dict.fromkeys(reachable, 0)
    for state in reachable:
        for arc in lattice.arcs[state]:
            incoming[arc.next_state] += 1
    ready, order = deque(s for s in sorted(reachable) if incoming[s] == 0), []
    while ready:
        state = ready.popleft()
        order.append(state)
        for arc in lattice.arcs[state]:
            incoming[arc.next_state] -= 1
            if incoming[arc.next_state] == 0:
                ready.append(arc.next_state)
    if len(order) != len(reachable):
        raise LatticeCycleError("the lattice has a cycle (Kaldi's lattices are acyclic)")
    return order


def best_path(lattice: CompactLattice, acoustic_scale: float = 1.0, lm_scale: float = 1.0,
              word_penalty: float = 0.0) -> BestPath:
    order = topological_order(lattice)
    cost = {lattice.start: 0.0}
    back: dict[int, tuple[int, int]] = {}  # state -> (previous state, word)
    for state in order:
        here = cost.get(state, math.inf)
        if math.isinf(here):
            continue
        for arc in lattice.arcs[state]:
            total = here + scaled_cost(arc.weight, acoustic_scale, lm_scale) + (word_penalty if arc.word else 0.0)
            if total < cost.get(arc.next_state, math.inf):
                cost[arc.next_state] = total
                back[arc.next_state] = (state, arc.word)
    best_state, best_cost = None, math.inf
    for state in order:
        final = lattice.finals[state]
        if final.is_zero or math.isinf(cost.get(state, math.inf)):
            continue
        total = cost[state] + scaled_cost(final, acoustic_scale, lm_scale)
        if total < best_cost:
            best_state, best_cost = state, total
    if best_state is None:
        return BestPath([], math.inf)
    words, state = [], best_state
    while state != lattice.start:
        previous, word = back[state]
        if word != 0:
            words.append(word)
        state = previous
    return BestPath(words[::-1], best_cost)
