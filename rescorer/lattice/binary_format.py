"""CompactLattice in Kaldi's binary form: an OpenFst vector FST of arc type `compactlattice44`.

Layout (little-endian), as OpenFst's FstHeader and VectorFst write it:
    int32 magic 2125659606, string "vector", string "compactlattice44" (a string is an int32
    length and its bytes), int32 version (2), int32 flags (no symbol tables), uint64 properties,
    int64 start, int64 number of states, int64 number of arcs (VectorFst writes 0 there: the
    arcs are counted per state); then per state: its final weight,
    int64 number of arcs, and per arc: int32 ilabel, int32 olabel (equal: an acceptor), weight,
    int32 next state.
A weight: float32 graph cost, float32 acoustic cost, int32 n, n int32 transition ids.
In a Kaldi archive the lattice follows `key ` directly (Kaldi recognises it by the magic
number); a `\\0B` binary marker before it is accepted too.

The property bits are kept as read and written back unchanged (a binary lattice round-trips
byte for byte); a lattice read from text is written with kExpanded | kMutable only (OpenFst
takes bits that are not set as unknown, never as false).
"""

from __future__ import annotations

import struct

from rescorer.lattice.compact_lattice import Arc, CompactLattice, LatticeWeight

MAGIC = 2125659606
FST_TYPE, ARC_TYPE = b"vector", b"compactlattice44"
VERSION = 2
KNOWN_PROPERTIES = 0x1 | 0x2  # kExpanded | kMutable: true of every vector FST
MAX_ALIGNMENT = 1 << 24  # transition ids in one weight


class BinaryLatticeError(ValueError):
    """Malformed bytes: the message gives the offset and what was expected."""


class _Reader:
    def __init__(self, data: bytes | memoryview, offset: int) -> None:
        self.data, self.offset = data, offset

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.offset + size > len(self.data):
            raise BinaryLatticeError(f"offset {self.offset}: the archive ends inside a lattice")
        values = struct.unpack_from(fmt, self.data, self.offset)
        self.offset += size
        return values

    def string(self, limit: int = 64) -> bytes:
        (length,) = self.take("<i")
        if not 0 <= length <= limit:
            raise BinaryLatticeError(f"offset {self.offset - 4}: a string of length {length}")
        if self.offset + length > len(self.data):
            raise BinaryLatticeError(f"offset {self.offset}: the archive ends inside a lattice")
        text = bytes(self.data[self.offset:self.offset + length])
        self.offset += length
        return text

    def weight(self) -> LatticeWeight:
        graph, acoustic, n = self.take("<ffi")
        if not 0 <= n <= MAX_ALIGNMENT:
            raise BinaryLatticeError(f"offset {self.offset - 4}: an alignment of {n} transition ids")
        alignment = self.take(f"<{n}i") if n else ()
        return LatticeWeight(graph, acoustic, tuple(alignment))


def is_binary_lattice(data: bytes | memoryview, offset: int) -> bool:
    return len(data) >= offset + 4 and struct.unpack_from("<i", data, offset)[0] == MAGIC


def read_binary_lattice(data: bytes | memoryview, offset: int, max_states: int,
                        max_arcs: int) -> tuple[CompactLattice, int]:
    """The lattice at `offset`, and the offset just after it."""
    r = _Reader(data, offset)
    (magic,) = r.take("<i")
    if magic != MAGIC:
        raise BinaryLatticeError(f"offset {offset}: not an OpenFst binary FST (magic {magic})")
    fst_type, arc_type = r.string(), r.string()
    if fst_type != FST_TYPE or arc_type != ARC_TYPE:
        raise BinaryLatticeError(f"offset {offset}: an FST of type {fst_type.decode(errors='replace')!r} and arc"
                                 f" type {arc_type.decode(errors='replace')!r}; expected 'vector' and"
                                 " 'compactlattice44' (a CompactLattice; lattice-copy writes one)")
    version, flags, properties, start, num_states, num_arcs = r.take("<iiQqqq")
    if flags & 0x3:
        raise BinaryLatticeError(f"offset {offset}: the FST carries symbol tables (flags {flags}), which Kaldi"
                                 " lattices never do")
    if not 0 <= num_states <= max_states:
        raise BinaryLatticeError(f"offset {offset}: {num_states:,} states; the reader takes 0-{max_states:,}")
    if not (-1 <= start < max(num_states, 1)) or (num_states and start < 0):
        raise BinaryLatticeError(f"offset {offset}: start state {start} of {num_states} states")
    arcs: list[list[Arc]] = []
    finals: list[LatticeWeight] = []
    seen = 0
    for _ in range(num_states):
        finals.append(r.weight())
        (count,) = r.take("<q")
        seen += count
        if count < 0 or seen > max_arcs:
            raise BinaryLatticeError(f"offset {r.offset - 8}: {count:,} arcs out of a state, past the reader's bound"
                                     f" of {max_arcs:,} arcs in a lattice")
        state_arcs = []
        for _ in range(count):
            ilabel, olabel = r.take("<ii")
            weight = r.weight()
            (next_state,) = r.take("<i")
            if ilabel != olabel or ilabel < 0 or not 0 <= next_state < num_states:
                raise BinaryLatticeError(f"offset {r.offset - 4}: arc {ilabel}:{olabel} to state {next_state}"
                                         f" (expected equal labels >= 0 and a state below {num_states})")
            state_arcs.append(Arc(ilabel, weight, next_state))
        arcs.append(state_arcs)
    if num_arcs not in (0, seen):
        raise BinaryLatticeError(f"offset {r.offset}: {seen:,} arcs where the header says {num_arcs:,}")
    if version != VERSION:
        raise BinaryLatticeError(f"offset {offset}: vector FST version {version}; expected {VERSION}")
    return CompactLattice(start if num_states else 0, arcs, finals, properties), r.offset


def _weight_bytes(weight: LatticeWeight) -> bytes:
    n = len(weight.alignment)
    return struct.pack(f"<ffi{n}i", weight.graph_cost, weight.acoustic_cost, n, *weight.alignment)


def format_binary_lattice(lattice: CompactLattice) -> bytes:
    properties = lattice.properties if lattice.properties is not None else KNOWN_PROPERTIES
    out = [struct.pack("<i", MAGIC), struct.pack("<i", len(FST_TYPE)), FST_TYPE,
           struct.pack("<i", len(ARC_TYPE)), ARC_TYPE,
           struct.pack("<iiQqqq", VERSION, 0, properties, lattice.start, lattice.num_states, 0)]
    for state in range(lattice.num_states):
        out.append(_weight_bytes(lattice.finals[state]))
        out.append(struct.pack("<q", len(lattice.arcs[state])))
        for arc in lattice.arcs[state]:
            out.append(struct.pack("<ii", arc.word, arc.word))
            out.append(_weight_bytes(arc.weight))
            out.append(struct.pack("<i", arc.next_state))
    return b"".join(out)
