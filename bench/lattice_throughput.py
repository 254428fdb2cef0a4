"""Lattice rescoring speed: arcs per second, and how the cost grows with lattice size and n-gram order.

    python bench/lattice_throughput.py --data-dir ../shared/data --out docs/bench/lattice_throughput.json

The real 2,144-arc lattice (`kaldi-lattices/kgraph-lat.txt`, 743 states, a Mandarin system's
word ids) alone and chained k times end to end (each copy's final states joined to the next
copy's start by an epsilon arc: a lattice k times as long, as a longer utterance gives), rescored
by `expand_lattice` at n-gram orders 2, 3 and 4 with the default beam (6) and acoustic scale
(0.1), and the single lattice again without pruning (beam inf). The LM: random weights (speed does not depend on them), 1 x --hidden LSTM, self-normalized,
a vocabulary of the lattice's words plus fillers up to --vocab words. Reported per setting:
seconds (best of --repeats), input arcs, expanded arcs, input and expanded arcs per second, and
the peak memory Python allocated during the expansion (tracemalloc, tensors' storage included).
Last, --max-arcs set below what the order-4 expansion of the longest chain needs: refused, with
the memory it had reached. One thread unless --threads.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
import tracemalloc
from pathlib import Path

import torch

from rescorer.artifact import Artifact
from rescorer.lattice import read_lattices
from rescorer.lattice.compact_lattice import Arc, CompactLattice, LatticeWeight
from rescorer.lattice.rescore import LatticeTooLarge, RescoreOptions, expand_lattice
from rescorer.model import LstmLanguageModel, ModelConfig
from rescorer.vocab import build_vocabulary


def chained(lattice: CompactLattice, copies: int) -> CompactLattice:
    """`copies` copies of the lattice in sequence: the finals of one lead by epsilon to the next's start."""
    n = lattice.num_states
    arcs: list[list[Arc]] = []
    finals = []
    for c in range(copies):
        for s in range(n):
            out = [Arc(a.word, a.weight, a.next_state + c * n) for a in lattice.arcs[s]]
            final = lattice.finals[s]
            if not final.is_zero and c < copies - 1:
                out.append(Arc(0, LatticeWeight(final.graph_cost, final.acoustic_cost, final.alignment),
                               lattice.start + (c + 1) * n))
                final = LatticeWeight(float("inf"), float("inf"))
            arcs.append(out)
            finals.append(final)
    return CompactLattice(lattice.start, arcs, finals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("docs/bench/lattice_throughput.json"))
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=10_000)
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--orders", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ((_, lattice),) = read_lattices(args.data_dir / "kaldi-lattices" / "kgraph-lat.txt")
    used = sorted({a.word for out in lattice.arcs for a in out} - {0})
    symbols = tuple(f"w{i}" for i in range(max(used) + 1))
    counts = {f"w{i}": 2 for i in used} | {f"filler{i}": 1 for i in range(max(0, args.vocab - len(used) - 3))}
    vocab = build_vocabulary(counts)
    torch.manual_seed(0)
    model = LstmLanguageModel(ModelConfig(vocab_size=len(vocab), embedding_dim=args.hidden, hidden_dim=args.hidden,
                                          num_layers=1, dropout=0.0, output_kind="self_normalized"), log_z=9.0)
    artifact = Artifact(model.eval(), vocab)
    rows = []
    settings = [(copies, order, 6.0) for copies in args.copies for order in args.orders]
    settings += [(args.copies[0], order, math.inf) for order in args.orders]  # what the beam saves
    for copies, order, beam in settings:
        big = chained(lattice, copies)
        options = RescoreOptions(ngram_order=order, beam=beam)
        best = float("inf")
        for _ in range(args.repeats):
            started = time.perf_counter()
            expanded = expand_lattice(artifact, big, symbols, options)
            best = min(best, time.perf_counter() - started)
        tracemalloc.start()
        expand_lattice(artifact, big, symbols, options)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        row = {"copies": copies, "ngram_order": order, "beam": beam, "input_arcs": big.num_arcs,
               "expanded_arcs": expanded.num_arcs, "seconds": best,
               "input_arcs_per_second": big.num_arcs / best, "expanded_arcs_per_second": expanded.num_arcs / best,
               "peak_python_mib": peak / 2**20}
        rows.append(row)
        print(f"{copies} x 2,144 arcs, order {order}, beam {beam:g}: {best:6.2f} s, {expanded.num_arcs:7d} expanded arcs,"
              f" {row['expanded_arcs_per_second']:7.0f} expanded arcs/s, peak {row['peak_python_mib']:.0f} MiB",
              flush=True)
    longest = chained(lattice, max(args.copies))
    bound = max(r["expanded_arcs"] for r in rows if r["copies"] == max(args.copies)) // 4
    tracemalloc.start()
    try:
        expand_lattice(artifact, longest, symbols, RescoreOptions(ngram_order=4, max_arcs=bound))
        refused = False
    except LatticeTooLarge:
        refused = True
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    bounded = {"max_arcs": bound, "refused": refused, "peak_python_mib": peak / 2**20}
    print(f"--max-arcs {bound}: refused {refused}, peak {bounded['peak_python_mib']:.0f} MiB")
    document = {"command": "python bench/lattice_throughput.py", "settings": {k: str(v) for k, v in vars(args).items()},
                "machine": {"processor": platform.processor(), "torch": torch.__version__},
                "rows": rows, "bounded": bounded}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
