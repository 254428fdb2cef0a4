"""`rescorer lattice ...`: the lattice commands.

    rescorer lattice copy IN OUT [--text | --binary]     as Kaldi's lattice-copy
    rescorer lattice best-path IN [--symbols words.txt] [--acoustic-scale A] [--lm-scale L] [--word-penalty P]
        `key word word ...` lines, as `lattice-best-path ark:IN ark,t:- | int2sym.pl -f 2- words.txt`
        prints them (word ids without --symbols)
    rescorer lattice rescore LM_DIR IN OUT --symbols words.txt [--ngram-order N] [--beam B] [--weight W]
        [--acoustic-scale A] [--skip-words W1,W2] [--max-arcs M] [--text | --binary]
        the lattices with the LM's costs interpolated into the graph costs (rescore.py)
    rescorer lattice from-nbest NBEST OUT --write-symbols words.txt [--symbols words.txt] [--format F]
        each utterance's N-best list merged into a word lattice whose paths are its hypotheses
IN and OUT may be `-`; `.gz` is read and written.
"""

from __future__ import annotations

import argparse
import math
import sys

from rescorer.artifact import load_artifact
from rescorer.atomic import text_output
from rescorer.errors import InputError
from rescorer.formats.reader import FORMATS, NbestSource, read_nbest
from rescorer.lattice.archive import LatticeError, read_lattices, write_lattices
from rescorer.lattice.best_path import LatticeCycleError, best_path
from rescorer.lattice.from_nbest import lattice_from_nbest
from rescorer.lattice.rescore import LatticeTooLarge, RescoreOptions, rescore_lattice
from rescorer.vocab import read_symbol_table


def _add_output_form(p: argparse.ArgumentParser) -> None:
    form = p.add_mutually_exclusive_group()
    form.add_argument("--text", dest="binary", action="store_false", help="write the text form (ark,t)")
    form.add_argument("--binary", dest="binary", action="store_true", help="write the binary form (the default)")
    p.set_defaults(binary=True)


def add_lattice_parser(sub) -> None:
    p = sub.add_parser("lattice", help="Kaldi lattices (CompactLattice archives, text or binary)")
    commands = p.add_subparsers(dest="lattice_command", required=True)
    copy = commands.add_parser("copy", help="read a lattice archive and write it again, in text or binary form"
                                            " (Kaldi's lattice-copy)")
    copy.add_argument("input", help="lattice archive, text or binary, plain or gzip ('-': standard input)")
    copy.add_argument("output", help="the archive to write ('-': standard output; a .gz name is compressed)")
    _add_output_form(copy)
    best = commands.add_parser("best-path", help="each lattice's best word sequence (Kaldi's lattice-best-path)")
    best.add_argument("input", help="lattice archive, text or binary, plain or gzip ('-': standard input)")
    best.add_argument("--symbols", help="Kaldi words.txt: print words (default: word ids)")
    best.add_argument("--acoustic-scale", type=float, default=1.0, help="scale of the acoustic costs (default 1,"
                                                                          " as lattice-best-path; decoding used ~0.1)")
    best.add_argument("--lm-scale", type=float, default=1.0, help="scale of the graph costs (default 1)")
    best.add_argument("--word-penalty", type=float, default=0.0,
                      help="cost added per word (default 0; Kaldi's lattice-add-penalty --word-ins-penalty)")
    defaults = RescoreOptions()
    rescore = commands.add_parser("rescore", help="rescore lattices with an LM artifact (graph costs interpolated)")
    rescore.add_argument("lm_dir", help="the artifact directory")
    rescore.add_argument("input", help="lattice archive, text or binary, plain or gzip ('-': standard input)")
    rescore.add_argument("output", help="the rescored archive ('-': standard output; a .gz name is compressed)")
    rescore.add_argument("--symbols", required=True, help="Kaldi words.txt of the lattices' word ids")
    rescore.add_argument("--ngram-order", type=int, default=defaults.ngram_order,
                         help=f"merge histories sharing their last N-1 words (default {defaults.ngram_order}; 0: exact)")
    rescore.add_argument("--beam", type=float, default=defaults.beam,
                         help=f"drop histories whose cost at a lattice state exceeds the cheapest one's there by"
                              f" more than B (default {defaults.beam:g}, Kaldi's --lattice-compose-beam; inf: none)")
    rescore.add_argument("--weight", type=float, default=defaults.weight,
                         help=f"the LM's share of the graph cost, (1-w) graph + w nnlm (default {defaults.weight:g})")
    rescore.add_argument("--acoustic-scale", type=float, default=defaults.acoustic_scale,
                         help=f"acoustic scale for the cheapest path into a merged state (default"
                              f" {defaults.acoustic_scale:g}, Kaldi's --acwt)")
    rescore.add_argument("--skip-words", help="comma-separated words not scored (silence, noise),"
                                                          " e.g. '!SIL,<unk>'")
    rescore.add_argument("--max-arcs", type=int, default=defaults.max_arcs,
                         help=f"refuse a lattice whose expansion passes this many arcs (default {defaults.max_arcs:,})")
    rescore.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    _add_output_form(rescore)
    merge = commands.add_parser("from-nbest", help="merge each utterance's N-best list into a word lattice")
    merge.add_argument("input", help="N-best lists in any input format with per-hypothesis scores")
    merge.add_argument("output", help="the lattice archive ('-': standard output; a .gz name is compressed)")
    merge.add_argument("--format", choices=FORMATS, help="input format (inferred from the path when omitted)")
    merge.add_argument("--score-mapping", help="named scores to am/lm, e.g. 'am=0.6*decoder+0.4*ctc,lm=lm'")
    merge.add_argument("--symbols", help="an existing words.txt to take word ids from (new words are added)")
    merge.add_argument("--write-symbols", required=True, help="where to write the words.txt of the lattices")
    _add_output_form(merge)


def run_lattice_command(args: argparse.Namespace) -> int:
    if args.lattice_command == "copy":
        write_lattices(read_lattices(args.input), args.output, args.binary)
        return 0
    if args.lattice_command == "best-path":
        for name in ("acoustic_scale", "lm_scale", "word_penalty"):
            if not math.isfinite(getattr(args, name)):
                raise InputError(f"--{name.replace('_', '-')}: expected a finite number, got {getattr(args, name)}")
        words = read_symbol_table(args.symbols).words if args.symbols else None
        for key, lattice in read_lattices(args.input):
            try:
                path = best_path(lattice, args.acoustic_scale, args.lm_scale, args.word_penalty)
            except LatticeCycleError as e:
                raise LatticeError(f"{args.input}: lattice {key!r}: {e}") from None
            if words is not None and any(w >= len(words) for w in path.words):
                missing = next(w for w in path.words if w >= len(words))
                raise LatticeError(f"{args.input}: lattice {key!r}: word id {missing} is not in {args.symbols}"
                                   f" ({len(words)} symbols)")
            sys.stdout.write(" ".join([key, *(words[w] if words else str(w) for w in path.words)]) + "\n")
        return 0
    if args.lattice_command == "rescore":
        try:
            options = RescoreOptions(args.weight, args.ngram_order, args.acoustic_scale,
                                     frozenset(w for w in (args.skip_words or "").split(",") if w), args.max_arcs,
                                     args.beam)
        except ValueError as e:
            raise InputError(f"lattice rescore: {e}") from None
        artifact = load_artifact(args.lm_dir, device=args.device)
        symbols = read_symbol_table(args.symbols).words
        rescored = []
        for key, lattice in read_lattices(args.input):
            try:
                rescored.append((key, rescore_lattice(artifact, lattice, symbols, options)))
            except (LatticeTooLarge, LatticeCycleError, ValueError) as e:
                raise LatticeError(f"{args.input}: lattice {key!r}: {e}") from None
        write_lattices(rescored, args.output, args.binary)
        return 0
    if args.lattice_command == "from-nbest":
        word_ids = {"<eps>": 0}
        if args.symbols:
            word_ids = {w: i for i, w in enumerate(read_symbol_table(args.symbols).words)}
        utterances = read_nbest(NbestSource(args.input, args.format, None, args.score_mapping, None))
        lattices = [(u.utt_id, lattice_from_nbest(u, word_ids)) for u in utterances]
        write_lattices(lattices, args.output, args.binary)
        with text_output(args.write_symbols) as out:
            out.write("".join(f"{w} {i}\n" for w, i in sorted(word_ids.items(), key=lambda kv: kv[1])))
        return 0
    raise AssertionError(args.lattice_command)
