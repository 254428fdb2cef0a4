"""What storing the teachers costs against the exact (live) teachers, over several seeds.

    python experiments/teacher_top_k.py --data-dir ../shared/data --out runs/top-k \
        --stores live top-k --ks 64 256 --seeds 1 2 3
    python experiments/teacher_top_k.py --losses kl tr --trust-as 0.03 0.1 0.3 1 ...   # the a-sweep

A small, complete run on PTB (every size below is a flag): two teachers trained on the first
--train-sentences sentences of PTB train (a 1 x --teacher-hidden softmax LSTM and a mixture of
--experts softmaxes of the same size, --teacher-epochs each), then 1 x --student-hidden
students distilled from both with each loss in --losses for --student-epochs, once per seed in
--seeds (the student's initialization, dropout and noise), from each store in --stores: `live`
(the teachers' exact distributions at every step, `--teacher-top-k 0`) and, per k in --ks, the
stored top k (`top-k`, the tail spread like the unigram) and, at equal bytes, the top k/2 with
k/2 words drawn from the tail (`top-k+samples`: `--teacher-top-k k/2 --teacher-samples k/2`,
the draw the seed's), and the top k with the rest shaped like the student's own distribution
(`top-k+student-tail`: `--teacher-tail student`, the same bytes as `top-k`; kl, interp, tr only). A teacherless `ce` student of the same size is trained per seed too:
its seconds per epoch are the plain epoch every store is priced against. Per student: PTB valid
perplexity (normalized; self-normalized too for nce-tr), seconds per training epoch and the
seconds spent computing the stored teachers (or, live, their cached LSTM features) before
them, and the store's size. `tr` and `nce-tr` run once per trust weight a in --trust-as (paper 2,
Eq. 6; default 0.1). The stores live in one directory shared by every run (--store-dir, default
OUT/stores), so each is computed once and read by every loss, a and (for `top-k`) seed.

Beside the rows, `summary` gives each row's mean and standard deviation over its seeds and
`paired` the paired relative differences (experiments/seed_statistics.py) with their 95 %
t intervals: every store against `live` for the same loss and a, `tr` against `kl` from the
same store, and each a against a = 0.1.

Every run is a resumable run directory (OUT/{loss}-{store}{k}-seed{seed}); rerunning the
command after a stop picks up where it was, so the table can grow run by run. Results to
OUT/results.json, which lists what has finished so far.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.adaptation_runs import evaluation, ptb_train_head, run, train_seconds, write_json
from experiments.seed_statistics import mean_sd, paired_relative_difference
from rescorer.artifact import load_artifact
from training.config import DEFAULT_TEACHER_STORE, TrainConfig
from training.teacher_cache import TeacherTopK

STORES = ("live", "top-k", "top-k+samples", "top-k+student-tail")
TRUSTED = ("tr", "nce-tr")  # the losses with a trust weight a
DEFAULT_A = 0.1


def store_name(top_k: int, samples: int) -> dict:
    """A trainer store (top k, drawn words) in this experiment's terms: top k/2 + k/2 drawn is
    `top-k+samples` at k."""
    return ({"store": "top-k+samples", "k": top_k + samples} if samples == top_k else
            {"store": "top-k", "k": top_k} if not samples else {"store": "top-k+samples", "top_k": top_k,
                                                                 "samples": samples})


DEFAULT_STORE = store_name(*DEFAULT_TEACHER_STORE["tr"]) | {
    "by_loss": {loss: store_name(*store) for loss, store in DEFAULT_TEACHER_STORE.items()}}


def row_name(row: dict) -> str:
    a = f" a={row['trust_a']:g}" if row["loss"] in TRUSTED else ""
    return f"{row['loss']}{a} {row['store']}{row['k'] or ''}"


def summarize(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """(mean and sd per row over its seeds, paired differences between rows)."""
    groups: dict[tuple, dict[int, float]] = {}
    for r in rows:
        groups.setdefault((r["loss"], r["trust_a"], r["store"], r["k"]), {})[r["seed"]] = r["valid_ppl"]
    summary = [{"loss": loss, "trust_a": a, "store": store, "k": k, "valid_ppl": mean_sd(list(by_seed.values())),
                "seeds": sorted(by_seed)} for (loss, a, store, k), by_seed in groups.items()]
    paired = []

    def compare(first: tuple, second: tuple, what: str) -> None:
        if first in groups and second in groups and first != second:
            difference = paired_relative_difference(groups[first], groups[second])
            if difference is not None:
                name = row_name(dict(zip(("loss", "trust_a", "store", "k"), first, strict=True)))
                against = row_name(dict(zip(("loss", "trust_a", "store", "k"), second, strict=True)))
                paired.append({"what": what, "row": name, "against": against, **difference})

    for loss, a, store, k in groups:
        compare((loss, a, store, k), (loss, a, "live", 0), "store against live")
        if loss == "tr":
            compare((loss, a, store, k), ("kl", None, store, k), "tr against kl")
        if loss in TRUSTED and a != DEFAULT_A:
            compare((loss, a, store, k), (loss, DEFAULT_A, store, k), f"a = {a:g} against a = {DEFAULT_A:g}")
    return summary, paired


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("runs/top-k"))
    parser.add_argument("--train-sentences", type=int, default=10_000)
    parser.add_argument("--teacher-hidden", type=int, default=128)
    parser.add_argument("--experts", type=int, default=2)
    parser.add_argument("--teacher-epochs", type=int, default=3)
    parser.add_argument("--student-hidden", type=int, default=48)
    parser.add_argument("--student-epochs", type=int, default=2)
    parser.add_argument("--stores", nargs="+", choices=STORES, default=list(STORES))
    parser.add_argument("--ks", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--losses", nargs="+", default=["tr", "nce-tr"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--trust-as", type=float, nargs="+", default=[DEFAULT_A],
                        help="trust weights a for tr and nce-tr (default: 0.1)")
    parser.add_argument("--store-dir", type=Path, default=None, help="the shared stores (default: OUT/stores)")
    parser.add_argument("--results", type=Path, default=None,
                        help="the JSON written (default: OUT/results.json); two commands sharing OUT, one per"
                             " core, each write their own, and --merge writes them together")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                        help="train nothing: write the rows of these results files together (with their summary"
                             " and paired differences) to --results")
    parser.add_argument("--plain", action=argparse.BooleanOptionalAction, default=True,
                        help="train the teacherless ce students (--no-plain: a second command beside one that does)")
    args = parser.parse_args()
    if args.merge:
        merge(args.merge, args.results or args.out / "results.json")
        return
    store_dir = args.store_dir or args.out / "stores"
    ptb = args.data_dir / "ptb"
    train_text = ptb_train_head(args.data_dir, args.out, args.train_sentences)
    valid = str(ptb / "ptb.valid.txt.gz")

    def config(name: str, hidden: int, epochs: int, **values) -> TrainConfig:
        return TrainConfig(train_path=str(train_text), dev_path=valid, out_dir=str(args.out / name),
                           embedding_dim=hidden, hidden_dim=hidden, num_layers=1, batch_size=32,
                           max_epochs=epochs, vocab_path=values.pop("vocab_path", None), **values)

    first = run(config("teacher-softmax", args.teacher_hidden, args.teacher_epochs, loss="ce", dropout=0.25))
    second = run(config("teacher-mos", args.teacher_hidden, args.teacher_epochs, loss="ce", output_kind="mos",
                        experts=args.experts, dropout=0.25, seed=2, vocab_path=str(first / "words.txt")))
    teachers = (str(first), str(second))
    teacher_rows = {n: evaluation(Path(t), Path(valid), "valid")["normalized_ppl"]
                    for n, t in (("softmax teacher", first), ("mos teacher", second))}
    stores = [(store, k) for store in args.stores for k in ([0] if store == "live" else args.ks)]
    rows, plain = [], []

    def write() -> None:
        seconds = [p["seconds_per_epoch"] for p in plain]
        summary, paired = summarize(rows)
        write_json(args.results or args.out / "results.json", {
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
                        | {"store_dir": str(store_dir)},
            "teachers_valid_ppl": teacher_rows, "plain_students": plain,
            "plain_seconds_per_epoch": sum(seconds) / len(seconds) if seconds else None,
            "default_store": DEFAULT_STORE, "students": rows, "summary": summary, "paired": paired})

    def student(loss: str, a: float | None, store: str, k: int, seed: int) -> dict:
        suffix = f"-a{a:g}" if a is not None and a != DEFAULT_A else ""  # a = 0.1 keeps the older names
        name = f"{loss}{suffix}-{store}{k or ''}-seed{seed}"
        top, samples = (k // 2, k - k // 2) if store == "top-k+samples" else (k, 0)
        tail = "student" if store == "top-k+student-tail" else "prior"
        artifact = run(config(name, args.student_hidden, args.student_epochs, loss=loss,
                              teacher_paths=teachers, teacher_top_k=top, teacher_samples=samples, teacher_tail=tail,
                              teacher_store=str(store_dir) if top else None, trust_a=a if a is not None else DEFAULT_A,
                              dropout=0.0, seed=seed, output_kind="self_normalized" if loss == "nce-tr" else "auto"))
        result = evaluation(artifact, Path(valid), "valid")
        teacher_seconds = load_artifact(artifact).provenance["distillation"]["teacher_seconds"]
        row = {"loss": loss, "trust_a": a, "store": store, "k": k, "seed": seed,
               "valid_ppl": result["normalized_ppl"],
               "valid_self_normalized_ppl": result["self_normalized_ppl"] if loss == "nce-tr" else None,
               "seconds_per_epoch": train_seconds(artifact) / args.student_epochs,
               "teacher_seconds": teacher_seconds, "store_bytes": store_bytes(k)}
        print(f"{name:28s} valid ppl {row['valid_ppl']:8.2f}"
              + (f" (self-normalized {row['valid_self_normalized_ppl']:.2f})" if loss == "nce-tr" else "")
              + f"  {row['seconds_per_epoch']:.0f} s/epoch + teachers {teacher_seconds:.0f} s"
              f"  store {row['store_bytes'] / 2**20:.0f} MiB", flush=True)
        return row

    def store_bytes(k: int) -> int:
        """The size of a store of k columns, from the positions its meta.json records."""
        if not k:
            return 0
        rows = {json.loads(m.read_text())["rows"] for m in store_dir.glob("*/meta.json")}
        return TeacherTopK.bytes_for(next(iter(rows)), k) if len(rows) == 1 else 0

    for seed in args.seeds:
        if args.plain:
            artifact = run(config(f"ce-plain-seed{seed}", args.student_hidden, args.student_epochs, loss="ce",
                                  dropout=0.0, seed=seed, vocab_path=str(first / "words.txt")))
            plain.append({"loss": "ce", "seed": seed, "valid_ppl": evaluation(artifact, Path(valid), "valid")[
                "normalized_ppl"], "seconds_per_epoch": train_seconds(artifact) / args.student_epochs})
        for loss in args.losses:
            for a in (args.trust_as if loss in TRUSTED else [None]):
                for store, k in stores:
                    if store == "top-k+student-tail" and loss not in ("kl", "interp", "tr"):
                        continue  # nce-tr reads the noise words' Q with the prior's tail
                    rows.append(student(loss, a, store, k, seed))
                    write()
    write()


def merge(paths: list[Path], out: Path) -> None:
    """One results file from several commands' (rows keyed by loss, a, store, k and seed; the
    first file's settings and teachers, each command's settings kept under `commands`; the
    trainer's default store as it is now)."""
    documents = [json.loads(p.read_text()) for p in paths]
    rows, plain = {}, {}
    for document in documents:
        for r in document["students"]:
            rows[(r["loss"], r["trust_a"], r["store"], r["k"], r["seed"])] = r
        for r in document["plain_students"]:
            plain[r["seed"]] = r
    summary, paired = summarize(list(rows.values()))
    seconds = [p["seconds_per_epoch"] for p in plain.values()]
    commands = [c for d in documents for c in d.get("commands", [d["settings"]])]  # a merged file keeps its own
    write_json(out, {"settings": documents[0]["settings"], "commands": commands,
                     "teachers_valid_ppl": documents[0]["teachers_valid_ppl"], "plain_students": list(plain.values()),
                     "plain_seconds_per_epoch": sum(seconds) / len(seconds) if seconds else None,
                     "default_store": DEFAULT_STORE, "students": list(rows.values()),
                     "summary": summary, "paired": paired})
    print(f"{out}: {len(rows)} students, {len(plain)} plain students from {len(paths)} files")


if __name__ == "__main__":
    main()
