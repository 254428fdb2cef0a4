"""The distribution of trust regularization's weight R(y) over the training positions.

    python experiments/trust_weights.py runs/top-k/tr-top-k64-seed1/teacher-top64 \
        --train runs/top-k/ptb-train-head.txt --teacher runs/top-k/teacher-softmax/artifact \
        --out docs/results/trust_weights.json

One pass over a teacher store's `target.npy` (ln Q(y|c) of the teachers' ensemble at every
training position, exact whatever the store's k: training/teacher_cache.py): for each a in --as,
R(y) = -a ln(1 - Q(y|c)) (paper 2, Eq. 6; 1 - Q floored at 1e-6 as the loss floors it) and
nce-tr's per-position gamma = R / (1 + R): mean, quantiles, and the share of positions where
R exceeds 0.1, 0.5 and 1 (where the cross-entropy term weighs at least a tenth, half, all of the
KL term). Also Q(y) itself: its mean and quantiles. The positions whose target is `<s>` (one per
sentence, masked in training) are left out: the store's layout is rebuilt from --train, the
teachers' vocabulary (--teacher) and the store's batch size and BPTT length.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.adaptation_runs import write_json
from rescorer.artifact import load_artifact
from training.batches import BpttBatches
from training.corpus import encode_corpus
from training.losses import TRUST_FLOOR

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


def summary(values: np.ndarray) -> dict:
    return {"mean": float(values.mean()), **{f"q{int(q * 100)}": float(np.quantile(values, q)) for q in QUANTILES}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", type=Path, help="a teacher store directory (with target.npy and meta.json)")
    parser.add_argument("--train", type=Path, required=True, help="the training text the store was built on")
    parser.add_argument("--teacher", type=Path, required=True, help="a teacher artifact (its vocabulary)")
    parser.add_argument("--as", dest="trust_as", type=float, nargs="+", default=[0.03, 0.1, 0.3, 1.0])
    parser.add_argument("--out", type=Path, default=Path("docs/results/trust_weights.json"))
    args = parser.parse_args()
    meta = json.loads((args.store / "meta.json").read_text())
    q = np.exp(np.load(args.store / "target.npy", mmap_mode="r").astype(np.float64))
    vocab = load_artifact(args.teacher).vocab
    with tempfile.TemporaryDirectory() as cache:
        ids = np.asarray(encode_corpus(args.train, vocab, cache).ids())
    targets = np.concatenate([t.reshape(-1).numpy() for _, t in BpttBatches(ids, meta["batch_size"], meta["bptt"])])
    if len(targets) != len(q):
        raise SystemExit(f"{args.store}: {len(q)} positions, but {args.train} at batch {meta['batch_size']} gives"
                         f" {len(targets)}: not the text this store was built on")
    q = q[targets != vocab.bos_id]
    one_minus = np.maximum(1.0 - q, TRUST_FLOOR)
    rows = {}
    for a in args.trust_as:
        r = -a * np.log(one_minus)
        rows[str(a)] = {"R": summary(r), "gamma": summary(r / (1.0 + r)),
                        "share_R_over": {str(t): float((r > t).mean()) for t in (0.1, 0.5, 1.0)}}
        print(f"a = {a:g}: mean R {rows[str(a)]['R']['mean']:.4f}, median {rows[str(a)]['R']['q50']:.4f},"
              f" R > 0.1 at {rows[str(a)]['share_R_over']['0.1']:.1%} of positions", flush=True)
    write_json(args.out, {"command": f"python experiments/trust_weights.py {args.store} --train {args.train}"
                                     f" --teacher {args.teacher}",
                          "store": {k: meta[k] for k in ("k", "rows", "vocab_size") if k in meta},
                          "positions": int(len(q)), "q_target": summary(q), "by_a": rows})


if __name__ == "__main__":
    main()
