"""An utterance's N-best list merged into one word lattice whose paths are exactly its hypotheses.

The hypotheses' words form a prefix tree (shared prefixes share states and arcs, with no cost);
each hypothesis then leaves the state its words reach by an epsilon arc of its own to a final
state of its own, and that arc carries its scores as Kaldi costs: graph cost -lm_score (0 where
the lists have no first-pass LM score), acoustic cost -am_score. So the lattice's path for a
hypothesis costs graph + A * acoustic = -(lm + A * am), the N-best combination at LM weight 1,
and rescoring the lattice scores the same word sequences the N-best path scores, sharing the
LSTM work of common prefixes. Used to measure lattice rescoring on lists that carry references.
"""

from __future__ import annotations

from rescorer.lattice.compact_lattice import ONE, ZERO, Arc, CompactLattice, LatticeWeight, float32
from rescorer.nbest import Utterance


def lattice_from_nbest(utterance: Utterance, word_ids: dict[str, int]) -> CompactLattice:
    """`word_ids` maps each word to its symbol id (>= 1); words missing from it are added with
    the next free id (the caller writes the table out)."""
    arcs: list[list[Arc]] = [[]]
    children: list[dict[int, int]] = [{}]
    finals: list[LatticeWeight] = [ZERO]
    for hyp in utterance.hyps:
        state = 0
        for word in hyp.words:
            if word not in word_ids:
                word_ids[word] = max(word_ids.values(), default=0) + 1
            wid = word_ids[word]
            if wid not in children[state]:
                arcs.append([])
                children.append({})
                finals.append(ZERO)
                children[state][wid] = len(arcs) - 1
                arcs[state].append(Arc(wid, ONE, len(arcs) - 1))
            state = children[state][wid]
        arcs.append([])
        children.append({})
        finals.append(ONE)
        cost = LatticeWeight(float32(-(hyp.lm_score or 0.0)), float32(-hyp.am_score))
        arcs[state].append(Arc(0, cost, len(arcs) - 1))
    return CompactLattice(0, arcs, finals)
