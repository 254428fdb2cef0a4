"""Kaldi word lattices (CompactLattice): reading and writing archives, text and binary.

`read_lattices(path)` -> [(key, CompactLattice)], `write_lattices(items, path, binary)`; `-` is
standard input or output, `.gz` is read and written compressed. See `compact_lattice.py` for
the model, `text_format.py` and `binary_format.py` for the two encodings.
"""

from rescorer.lattice.archive import LatticeError, read_lattices, write_lattices
from rescorer.lattice.compact_lattice import Arc, CompactLattice, LatticeWeight

__all__ = ["Arc", "CompactLattice", "LatticeError", "LatticeWeight", "read_lattices", "write_lattices"]
