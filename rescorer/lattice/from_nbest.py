"""An utterance's N-best list merged into one word lattice.

Hypotheses with one score per hypothesis (most lists): the words form a prefix tree (shared
prefixes share states and arcs, with no cost); each hypothesis then leaves the state its words
reach by an epsilon arc of its own to a final state of its own, and that arc carries its scores
as Kaldi costs: graph cost -lm_score (0 where the lists have no first-pass LM score), acoustic
cost -am_score. The lattice's paths are exactly the hypotheses, a path costing graph + A *
acoustic = -(lm + A * am), the N-best combination at LM weight 1; rescoring it scores the same
word sequences as the N-best path does, sharing the LSTM work of common prefixes.

Hypotheses with scores per word (`word_am_scores` and `word_lm_scores` in a JSONL hypothesis:
one natural-log score per word and one more for the end of sentence, as the WSJ HUB-1 lists'
`.acc` and `.llm` columns): the lattice a decoder would have written, as far as the lists
show it. A word's acoustic score is that of its time segment and its first-pass LM score that
of its n-gram context, so two hypotheses that carry the same word with the same two scores
(to 0.01) at the same place are taken to share the arc: points between words are merged when
the words and scores before them are the same (a shared prefix) or the words and scores after
them are (a shared suffix: the same segments to the end, the n-gram contexts caught up), and
each word becomes an arc between the merged points with costs -lm and -am. Every hypothesis
stays a path with exactly its scores; the merges add the paths a real lattice holds beside
them (one hypothesis's beginning followed by another's end where their segment boundaries
meet). Where merging would close a cycle (a repeated word can), that utterance falls back to
the prefix tree with per-word costs.
"""

from __future__ import annotations

import math

from rescorer.lattice.best_path import LatticeCycleError, topological_order
from rescorer.lattice.compact_lattice import ONE, ZERO, Arc, CompactLattice, LatticeWeight, float32
from rescorer.nbest import Hypothesis, NbestError, Utterance

WORD_SCORE_FIELDS = ("word_am_scores", "word_lm_scores")
SCORE_DECIMALS = 2  # per-word scores equal to this many decimals: the same segment, the same context


def lattice_from_nbest(utterance: Utterance, word_ids: dict[str, int]) -> CompactLattice:
    """`word_ids` maps each word to its symbol id (>= 1); words missing from it are added with
    the next free id (the caller writes the table out)."""
    for hyp in utterance.hyps:
        for word in hyp.words:
            if word not in word_ids:
                word_ids[word] = max(word_ids.values(), default=0) + 1
    per_word = [_word_scores(utterance, n, hyp) for n, hyp in enumerate(utterance.hyps, start=1)]
    if all(scores is not None for scores in per_word):
        merged = _merged(utterance, per_word, word_ids, share_suffixes=True)
        try:
            topological_order(merged)
            return merged
        except LatticeCycleError:
            return _merged(utterance, per_word, word_ids, share_suffixes=False)
    return _prefix_tree(utterance, word_ids)


def count_paths(lattice: CompactLattice) -> int:
    """The number of paths from the start to a final state (exact, as a Python integer)."""
    order = topological_order(lattice)
    paths = dict.fromkeys(order, 0)
    paths[lattice.start] = 1
    total = 0
    for s in order:
        for arc in lattice.arcs[s]:
            paths[arc.next_state] += paths[s]
        if not lattice.finals[s].is_zero:
            total += paths[s]
    return total


def _word_scores(utterance: Utterance, n: int, hyp: Hypothesis) -> list[tuple[float, float]] | None:
    """(am, lm) per word and for the end of sentence, or None where the hypothesis has no per-word scores."""
    given = [name for name in WORD_SCORE_FIELDS if name in hyp.extra]
    if not given:
        return None
    where = f"utterance {utterance.utt_id!r} hypothesis {n}"
    if len(given) != 2:
        missing = next(name for name in WORD_SCORE_FIELDS if name not in given)
        raise NbestError(f"{where}: {given[0]} without {missing} (give both, or neither)")
    columns = []
    for name in WORD_SCORE_FIELDS:
        values = hyp.extra[name]
        if not isinstance(values, list) or len(values) != len(hyp.words) + 1:
            raise NbestError(f"{where}: {name} must be a list of {len(hyp.words) + 1} numbers (one per word and"
                             f" one for the end of sentence), found {values!r:.80}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise NbestError(f"{where}: {name} must hold finite numbers, found {values!r:.80}")
        columns.append([float(v) for v in values])
    return list(zip(*columns, strict=True))


def _prefix_tree(utterance: Utterance, word_ids: dict[str, int]) -> CompactLattice:
    arcs: list[list[Arc]] = [[]]
    children: list[dict[int, int]] = [{}]
    finals: list[LatticeWeight] = [ZERO]
    for hyp in utterance.hyps:
        state = 0
        for word in hyp.words:
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


def _merged(utterance: Utterance, per_word: list, word_ids: dict[str, int], share_suffixes: bool) -> CompactLattice:
    """Points between words merged on equal prefixes (and, with share_suffixes, equal suffixes)
    of (word, am, lm) keys; one arc per distinct (from, word, costs, to)."""
    keys = [[(w, round(am, SCORE_DECIMALS), round(lm, SCORE_DECIMALS)) for w, (am, lm) in zip(hyp.words, s,
                                                                                               strict=False)]
            + [("</s>", round(s[-1][0], SCORE_DECIMALS), round(s[-1][1], SCORE_DECIMALS))]
            for hyp, s in zip(utterance.hyps, per_word, strict=True)]
    parent: dict[tuple[int, int], tuple[int, int]] = {}

    def find(p: tuple[int, int]) -> tuple[int, int]:
        while parent.setdefault(p, p) != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    first_by_key: dict[tuple, tuple[int, int]] = {}
    for h, key in enumerate(keys):
        for i in range(len(key)):  # point i: before word i (i = len(words): before the end of sentence)
            for shared in (("prefix", *key[:i]),) + ((("suffix", *key[i:]),) if share_suffixes else ()):
                other = first_by_key.setdefault(shared, (h, i))
                parent[find((h, i))] = find(other)
    number: dict[tuple[int, int], int] = {}
    start = find((0, 0))
    number[start] = 0
    arcs: list[list[Arc]] = [[]]
    finals: list[LatticeWeight] = [ZERO]

    def state(point: tuple[int, int]) -> int:
        root = find(point)
        if root not in number:
            number[root] = len(arcs)
            arcs.append([])
            finals.append(ZERO)
        return number[root]

    seen: set[tuple] = set()
    for h, (hyp, scores) in enumerate(zip(utterance.hyps, per_word, strict=True)):
        words = hyp.words
        for i, word in enumerate(words):
            arc = Arc(word_ids[word], LatticeWeight(float32(-scores[i][1]), float32(-scores[i][0])), state((h, i + 1)))
            source = state((h, i))
            if (source, arc) not in seen:
                seen.add((source, arc))
                arcs[source].append(arc)
        end = state((h, len(words)))
        final = LatticeWeight(float32(-scores[-1][1]), float32(-scores[-1][0]))
        if finals[end].is_zero or finals[end] == final:
            finals[end] = final
        elif (end, final) not in seen:  # another end-of-sentence score here: its own final state
            seen.add((end, final))
            arcs.append([])
            finals.append(final)
            arcs[end].append(Arc(0, ONE, len(arcs) - 1))
    return CompactLattice(0, arcs, finals)
