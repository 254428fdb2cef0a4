"""CompactLattice in Kaldi's text form (`lattice-copy ark:- ark,t:-`).

    key␠\n
    src\tdst\tword\tgraph,acoustic,tid_tid_...\n     one line an arc
    state\tgraph,acoustic,tid_...\n                  a final state (its final weight)
    \n                                                the end of the lattice

As Kaldi prints it (OpenFst's FstPrinter, acceptor form): a weight equal to One (0,0 and no
transition ids) is left out, on an arc and on a final line alike; the start state's arcs first, then every other state in order, each state's arcs then its final line;
costs with 6 significant digits (C++'s default float output, "%g"). Read: fields separated by
any ASCII whitespace; a final line with no weight is final with weight One; a cost may be
written in any float syntax ("0.0").
"""

from __future__ import annotations

from rescorer.lattice.compact_lattice import ONE, ZERO, Arc, CompactLattice, LatticeWeight, float32


class TextLatticeError(ValueError):
    """A malformed line: the message says which line of the lattice and what was expected."""


def parse_weight(text: str) -> LatticeWeight:
    parts = text.split(",")
    if len(parts) != 3:
        raise TextLatticeError(f"weight {text[:80]!r}: expected GRAPH,ACOUSTIC,TIDS (TIDS may be empty)")
    try:
        graph, acoustic = float32(float(parts[0])), float32(float(parts[1]))
        alignment = tuple(int(t) for t in parts[2].split("_")) if parts[2] else ()
    except ValueError:
        raise TextLatticeError(f"weight {text[:80]!r}: costs must be numbers and transition ids integers") from None
    return LatticeWeight(graph, acoustic, alignment)


def parse_lattice(lines: list[str], max_states: int, max_arcs: int) -> CompactLattice:
    """The lattice in `lines` (without the key line and the closing empty line)."""
    arcs: dict[int, list[Arc]] = {}
    finals: dict[int, LatticeWeight] = {}
    start = None  # the first line's state: FstPrinter prints the start state first
    top, count = -1, 0
    for number, line in enumerate(lines, 1):
        fields = line.split()
        try:
            if len(fields) in (3, 4):
                src, dst, word = int(fields[0]), int(fields[1]), int(fields[2])
                weight = parse_weight(fields[3]) if len(fields) == 4 else ONE
                if min(src, dst, word) < 0:
                    raise TextLatticeError("state and word ids must be >= 0")
                arcs.setdefault(src, []).append(Arc(word, weight, dst))
                count += 1
                states = (src, dst)
            elif len(fields) in (1, 2):
                state = int(fields[0])
                if state < 0:
                    raise TextLatticeError("state ids must be >= 0")
                finals[state] = parse_weight(fields[1]) if len(fields) == 2 else ONE
                src, states = state, (state,)
            else:
                raise TextLatticeError(f"{len(fields)} fields; expected 'SRC DST WORD WEIGHT' or 'STATE [WEIGHT]'")
        except ValueError as e:
            raise TextLatticeError(f"line {number} of the lattice ({line[:80]!r}): {e}") from None
        start = src if start is None else start
        top = max(top, *states)
        if top + 1 > max_states or count > max_arcs:
            raise TextLatticeError(f"line {number} of the lattice: more than {max_states:,} states or"
                                   f" {max_arcs:,} arcs (the reader's bound)")
    if top < 0:
        raise TextLatticeError("an empty lattice (no arc and no final state)")
    n = top + 1
    return CompactLattice(start=start, arcs=[arcs.get(s, []) for s in range(n)],
                          finals=[finals.get(s, ZERO) for s in range(n)])


def format_cost(value: float) -> str:
    return "Infinity" if value == float("inf") else "-Infinity" if value == float("-inf") else f"{value:.6g}"


def format_weight(weight: LatticeWeight) -> str:
    return (f"{format_cost(weight.graph_cost)},{format_cost(weight.acoustic_cost)},"
            + "_".join(str(t) for t in weight.alignment))


def format_lattice(key: str, lattice: CompactLattice) -> str:
    out = [f"{key} \n"]
    states = [lattice.start] + [s for s in range(lattice.num_states) if s != lattice.start]
    for state in states:
        for arc in lattice.arcs[state]:
            weight = "" if arc.weight == ONE else f"\t{format_weight(arc.weight)}"
            out.append(f"{state}\t{arc.next_state}\t{arc.word}{weight}\n")
        final = lattice.finals[state]
        if not final.is_zero:
            out.append(f"{state}\n" if final == ONE else f"{state}\t{format_weight(final)}\n")
    out.append("\n")
    return "".join(out)
