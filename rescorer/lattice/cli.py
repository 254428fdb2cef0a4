"""`rescorer lattice ...`: the lattice commands.

    rescorer lattice copy IN OUT [--text | --binary]     as Kaldi's lattice-copy
IN and OUT may be `-`; `.gz` is read and written.
"""

from __future__ import annotations

import argparse

from rescorer.lattice.archive import read_lattices, write_lattices


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


def run_lattice_command(args: argparse.Namespace) -> int:
    if args.lattice_command == "copy":
        write_lattices(read_lattices(args.input), args.output, args.binary)
        return 0
    raise AssertionError(args.lattice_command)
