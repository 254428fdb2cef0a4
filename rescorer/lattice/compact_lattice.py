"""Kaldi's CompactLattice: an acceptor over words whose weights carry two costs and an alignment.

Each arc has a word id (0: epsilon), a weight and a destination; a final state has a final
weight. A weight is (graph_cost, acoustic_cost, transition ids): Kaldi's LatticeWeight of two
float32 costs (negated natural-log scores, lower is better; the graph cost holds the first-pass
LM, transition and pronunciation costs) and the transition-id string of the frames the arc
spans. Costs are kept as the float32 values Kaldi wrote (a binary lattice written back is the
same bytes). `Zero` (both costs +inf, no alignment) marks a non-final state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


def float32(value: float) -> float:
    """`value` rounded to float32, as Kaldi stores a cost."""
    return float(np.float32(value))


@dataclass(frozen=True)
class LatticeWeight:
    graph_cost: float
    acoustic_cost: float
    alignment: tuple[int, ...] = ()

    @property
    def is_zero(self) -> bool:
        return math.isinf(self.graph_cost) and self.graph_cost > 0


ZERO = LatticeWeight(math.inf, math.inf)
ONE = LatticeWeight(0.0, 0.0)


@dataclass(frozen=True)
class Arc:
    word: int  # 0: epsilon
    weight: LatticeWeight
    next_state: int


@dataclass
class CompactLattice:
    start: int
    arcs: list[list[Arc]]  # per state, in order
    finals: list[LatticeWeight]  # per state; ZERO: not final
    properties: int | None = field(default=None)  # OpenFst's property bits, as read from a binary lattice

    @property
    def num_states(self) -> int:
        return len(self.arcs)

    @property
    def num_arcs(self) -> int:
        return sum(len(a) for a in self.arcs)

    def final_states(self) -> list[int]:
        return [s for s, w in enumerate(self.finals) if not w.is_zero]

    def same_as(self, other: CompactLattice) -> bool:
        """The same lattice: states, arcs, weights and alignments (OpenFst's property bits aside)."""
        return (self.start, self.arcs, self.finals) == (other.start, other.arcs, other.finals)
