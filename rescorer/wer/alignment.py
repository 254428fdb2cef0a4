"""Word alignment with NIST sclite's costs, so that S/D/I breakdowns match sclite's reports.

A minimum-edit-count alignment (what jiwer computes, all edits cost 1) and sclite's alignment
(correct 0, insertion 3, deletion 3, substitution 4) may split the errors differently, and may
even count a different number of them: sclite prefers a deletion plus an insertion that keep a
later word correct over two substitutions (ref `b d b c b d a`, hyp `a c a a a d c d`: 7 edits,
8 sclite errors). Every error count in the product uses this alignment (`rescorer.wer.counts`), and
tests check it against sclite where sclite is installed.
"""

from __future__ import annotations

from collections.abc import Sequence

INSERTION, DELETION, SUBSTITUTION = 3, 3, 4


def sclite_counts(ref: Sequence[str], hyp: Sequence[str]) -> tuple[int, int, int, int]:
    """(hits, substitutions, deletions, insertions) of the cheapest alignment under sclite's costs."""
    hits = subs = dels = ins = 0
    for op in _backtrace(ref, hyp):
        if op == 0:
            hits += 1
        elif op == 1:
            subs += 1
        elif op == 2:
            dels += 1
        else:
            ins += 1
    return hits, subs, dels, ins


def sclite_alignment(ref: Sequence[str], hyp: Sequence[str]) -> list[tuple[str, str | None, str | None]]:
    """The cheapest alignment under sclite's costs, in order: (op, ref word, hyp word) with op C
    (correct), S (substitution), D (deletion: no hyp word) or I (insertion: no ref word)."""
    ops, i, j = [], len(ref), len(hyp)
    for op in _backtrace(ref, hyp):
        if op <= 1:
            i, j = i - 1, j - 1
            ops.append(("CS"[op], ref[i], hyp[j]))
        elif op == 2:
            i -= 1
            ops.append(("D", ref[i], None))
        else:
            j -= 1
            ops.append(("I", None, hyp[j]))
    ops.reverse()
    return ops


def _backtrace(ref: Sequence[str], hyp: Sequence[str]) -> list[int]:
    """The cheapest alignment's operations from the end backwards: 0 correct, 1 substitution,
    2 deletion, 3 insertion."""
    n, m = len(ref), len(hyp)
    # cost[i][j]: cheapest alignment of ref[:i] and hyp[:j]; move[i][j]: 0 diagonal, 1 deletion, 2 insertion
    previous = [j * INSERTION for j in range(m + 1)]
    moves = [[2] * (m + 1)]
    for i in range(1, n + 1):
        current = [i * DELETION] + [0] * m
        row = [1] + [0] * m
        r = ref[i - 1]
        for j in range(1, m + 1):
            diagonal = previous[j - 1] + (0 if r == hyp[j - 1] else SUBSTITUTION)
            deletion = previous[j] + DELETION
            insertion = current[j - 1] + INSERTION
            if diagonal <= deletion and diagonal <= insertion:
                current[j], row[j] = diagonal, 0
            elif deletion <= insertion:
                current[j], row[j] = deletion, 1
            else:
                current[j], row[j] = insertion, 2
        moves.append(row)
        previous = current
    out = []
    i, j = n, m
    while i > 0 or j > 0:
        move = moves[i][j] if i > 0 else 2
        if move == 0 and i > 0 and j > 0:
            out.append(0 if ref[i - 1] == hyp[j - 1] else 1)
            i, j = i - 1, j - 1
        elif move == 1 or j == 0:
            out.append(2)
            i -= 1
        else:
            out.append(3)
            j -= 1
    return out
