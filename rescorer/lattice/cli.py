"""`rescorer lattice ...`: the lattice commands.

    rescorer lattice copy IN OUT [--text | --binary]     as Kaldi's lattice-copy
    rescorer lattice best-path IN [--symbols words.txt] [--acoustic-scale A] [--lm-scale L]
        `key word word ...` lines, as `lattice-best-path ark:IN ark,t:- | int2sym.pl -f 2- words.txt`
        prints them (word ids without --symbols)
IN and OUT may be `-`; `.gz` is read and written.
"""

from __future__ import annotations

import argparse
import math
import sys

from rescorer.errors import InputError
from rescorer.lattice.archive import LatticeError, read_lattices, write_lattices
from rescorer.lattice.best_path import LatticeCycleError, best_path
from rescorer.vocab import read_symbol_table


def add_lattice_parser(sub) -> None:
    p = sub.add_parser("lattice", help="Kaldi lattices (CompactLattice archives, text or binary)")
    commands = p.add_subparsers(dest="lattice_command", required=True)
    copy = commands.add_parser("copy", help="read a lattice archive and write it again, in text or binary form"
                                            " (Kaldi's lattice-copy)")
    copy.add_argument("input", help="lattice archive, text or binary, plain or gzip ('-': standard input)")
    copy.add_argument("output", help="the archive to write ('-': standard output; a .gz name is compressed)")
    form = copy.add_mutually_exclusive_group()
    form.add_argument("--text", dest="binary", action="store_false", help="write the text form (ark,t)")
    form.add_argument("--binary", dest="binary", action="store_true", help="write the binary form (the default)")
    copy.set_defaults(binary=True)
    best = commands.add_parser("best-path", help="each lattice's best word sequence (Kaldi's lattice-best-path)")
    best.add_argument("input", help="lattice archive, text or binary, plain or gzip ('-': standard input)")
    best.add_argument("--symbols", help="Kaldi words.txt: print words (default: word ids)")
    best.add_argument("--acoustic-scale", type=float, default=1.0, help="scale of the acoustic costs (default 1,"
                                                                          " as lattice-best-path; decoding used ~0.1)")
    best.add_argument("--lm-scale", type=float, default=1.0, help="scale of the graph costs (default 1)")


def run_lattice_command(args: argparse.Namespace) -> int:
    if args.lattice_command == "copy":
        write_lattices(read_lattices(args.input), args.output, args.binary)
        return 0
    if args.lattice_command == "best-path":
        for name in ("acoustic_scale", "lm_scale"):
            if not math.isfinite(getattr(args, name)):
                raise InputError(f"--{name.replace('_', '-')}: expected a finite number, got {getattr(args, name)}")
        words = read_symbol_table(args.symbols).words if args.symbols else None
        for key, lattice in read_lattices(args.input):
            try:
                path = best_path(lattice, args.acoustic_scale, args.lm_scale)
            except LatticeCycleError as e:
                raise LatticeError(f"{args.input}: lattice {key!r}: {e}") from None
            if words is not None and any(w >= len(words) for w in path.words):
                missing = next(w for w in path.words if w >= len(words))
                raise LatticeError(f"{args.input}: lattice {key!r}: word id {missing} is not in {args.symbols}"
                                   f" ({len(words)} symbols)")
            sys.stdout.write(" ".join([key, *(words[w] if words else str(w) for w in path.words)]) + "\n")
        return 0
    raise AssertionError(args.lattice_command)
