"""PTB distillation, as paper 2 Tables 2 and 3, scaled down to 2 CPU cores.

    python experiments/ptb_distillation.py --data-dir ../shared/data --out runs/ptb-distill

Teachers: an ensemble of --members mixture-of-softmaxes LSTMs (--member-layers x --member-hidden,
--experts K, embedding = hidden), trained with cross-entropy and the AWD-LSTM regularizations
(variational dropout 0.25, DropConnect 0.25 on W_hh, embedding dropout 0.05, AR 2, TAR 1), one
seed each; their probabilities are averaged. Students: 1 x --student-hidden LSTM (embedding =
hidden), about a third of one member's parameters, trained on PTB train with the teachers:
TR (a = --trust-a), KL only, fixed interpolation alpha in --alphas, TR with dropout 0.25;
without a teacher: CE only with dropout 0.25, NCE alone (self-normalized, dropout 0.25); and the
self-normalized `nce-tr` student (NCE+KLD toward the teachers at gamma = R / (1 + R)).
Students other than the "with dropout" ones use no dropout (paper 2: regularization off for
distillation). Every model: normalized valid and test perplexity (sentences from a zero state,
as the rescorer scores them), parameters, training seconds; self-normalized models also their
self-normalized perplexity and log Z(h) statistics. The ensemble is scored token by token (the
log of the members' mean probability).

Every model is a resumable run directory, so a stopped run continues where it was. `--only ROW
...` trains just those rows (and the members first when a named row needs the teachers), so two
one-thread processes can share the machine: `--only "member 1"` beside `--only "member 2"`, the
students without a teacher beside the members, then the distilled students two by two. Every
invocation rewrites OUT/results.json with all the rows finished so far.

Cost on the project's 2-core machine (one thread per process): the members train a K-fold
softmax (about 750 s an epoch for 1 x 200, K = 2, on one core); the distilled students read the
teachers from one store (training.teacher_cache, --teacher-top-k, 1024 by default here; 7.6 GB
for PTB train) in OUT/teachers, built by the first of them, so an epoch costs 1.0-1.25x a
plain one instead of 9.5x (docs/RESULTS.md), at a measured cost in perplexity that RESULTS states
beside the table. Every model trains
until its schedule ends (full rate while dev improves by 0.3 % or more, then 5 halved epochs)
or the epoch cap; results.json says which, with the last epoch's improvement. Each run's
history.json records its epoch times, and results.json the training seconds of every row.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.adaptation_runs import evaluation, run, train_seconds, write_json
from rescorer.artifact import load_artifact, parameter_count, read_artifact_config
from rescorer.model import ModelConfig
from rescorer.sentence_scoring import score_sentences
from training.config import TrainConfig
from training.corpus import iter_sentences

TEACHER_REGULARIZATION = dict(variational_dropout=0.25, weight_drop=0.25, embedding_dropout=0.05,
                              activation_reg=2.0, temporal_activation_reg=1.0)


def parameters(artifact: Path) -> int:
    return parameter_count(ModelConfig(**read_artifact_config(artifact)["model"]))


def ensemble_log_probs(per_member: list[list[np.ndarray]]) -> np.ndarray:
    """Per sentence, the ensemble's log-probability: the sum over its tokens of ln((1/M) sum_m
    P_m(w|h)), from each member's per-token log-probabilities (M lists of per-sentence arrays)."""
    log_m = math.log(len(per_member))
    return np.array([float((np.logaddexp.reduce(np.stack(tokens), axis=0) - log_m).sum())
                     for tokens in zip(*per_member, strict=True)])


def ensemble_perplexity(members: list[Path], text: Path) -> float:
    """exp(-mean ln((1/M) sum_m P_m(w|h))) over every predicted token (words and </s>)."""
    sentences = list(iter_sentences(text))
    per_member = [score_sentences(load_artifact(m), sentences, per_token=True).token_log_probs for m in members]
    return math.exp(-ensemble_log_probs(per_member).sum() / sum(len(t) for t in per_member[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("runs/ptb-distill"))
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--member-hidden", type=int, default=200)
    parser.add_argument("--member-layers", type=int, default=1)
    parser.add_argument("--experts", type=int, default=2)
    parser.add_argument("--member-epochs", type=int, default=40,
                        help="epoch cap; the schedule (anneal, then stop) usually ends a run before it")
    parser.add_argument("--student-hidden", type=int, default=72, help="about a third of a member's parameters")
    parser.add_argument("--student-epochs", type=int, default=40, help="epoch cap, as --member-epochs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--trust-a", type=float, default=0.1)
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.5, 0.2, 0.1])
    parser.add_argument("--teacher-top-k", type=int, default=1024,
                        help="the distilled students read the teachers stored as their top k (0: exact, live);"
                             " an epoch costs about the same from k = 64 to 1024 (bench/distill_throughput.py),"
                             " and 1024 came closest to the exact teachers (experiments/teacher_top_k.py)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="training arithmetic (bf16: CPUs with bf16 arithmetic, or CUDA). May change when a run"
                             " resumes; results.json counts each run's epochs by precision. The PTB teachers'"
                             " recipe in bf16 trained 1.75x as fast at +0.87 %% valid perplexity after 2 epochs"
                             " (experiments/bf16_training.py --kinds mos; docs/RESULTS.md)")
    parser.add_argument("--only", nargs="*", help="train only these rows (names as in results.json)")
    args = parser.parse_args()
    ptb = args.data_dir / "ptb"
    train_text, valid, test = (str(ptb / f"ptb.{n}.txt.gz") for n in ("train", "valid", "test"))

    def config(name: str, hidden: int, layers: int, epochs: int, **values) -> TrainConfig:
        return TrainConfig(train_path=train_text, dev_path=valid, out_dir=str(args.out / name),
                           embedding_dim=hidden, hidden_dim=hidden, num_layers=layers, batch_size=args.batch_size,
                           max_epochs=epochs, precision=args.precision, **values)

    member_configs = {
        f"member {i + 1}": config(f"member{i + 1}", args.member_hidden, args.member_layers, args.member_epochs,
                                  loss="ce", output_kind="mos", experts=args.experts, seed=17 + 14 * i,
                                  **TEACHER_REGULARIZATION)
        for i in range(args.members)}
    teachers = tuple(str(Path(c.out_dir) / "artifact") for c in member_configs.values())

    def student(name: str, **values) -> TrainConfig:
        values = {"dropout": 0.0, **values}
        if values.get("teacher_paths"):  # every distilled student reads one store, built by the first
            values |= {"teacher_top_k": args.teacher_top_k, "teacher_store": str(args.out / "teachers")}
        return config(name, args.student_hidden, 1, args.student_epochs, **values)

    plans = {
        "CE only, dropout": student("ce_dropout", loss="ce", dropout=0.25),
        "NCE alone, dropout": student("nce_dropout", loss="nce", dropout=0.25),
        "TR": student("tr", loss="tr", teacher_paths=teachers, trust_a=args.trust_a),
        "KL only": student("kl", loss="kl", teacher_paths=teachers),
        "nce-tr (self-normalized)": student("nce_tr", loss="nce-tr", teacher_paths=teachers, trust_a=args.trust_a),
        **{f"interp alpha {a:g}": student(f"interp_{a:g}", loss="interp", teacher_paths=teachers, alpha=a)
           for a in args.alphas},
    }
    plans["TR, dropout"] = student("tr_dropout", loss="tr", teacher_paths=teachers, trust_a=args.trust_a,
                                   dropout=0.25)
    unknown = set(args.only or ()) - set(member_configs) - set(plans)
    if unknown:
        parser.error(f"--only: no such rows {sorted(unknown)}; rows are {list(member_configs) + list(plans)}")

    def wanted(name: str) -> bool:
        return not args.only or name in args.only

    # Members train first when a wanted row needs the teachers (or a member is named), so
    # several processes can share the work: `--only "member 2"` beside `--only "member 1"`,
    # and the students without a teacher beside the members.
    need_teachers = any(wanted(n) and plans[n].teacher_paths for n in plans)
    for name, member in member_configs.items():
        if wanted(name) or need_teachers:
            run(member)
    for name, plan in plans.items():
        if wanted(name):
            run(plan)
    members = [Path(t) for t in teachers if (Path(t) / "config.json").exists()]

    # results.json: every finished row (a rerun without --only collects all of them).
    rows = {}
    for i, artifact in enumerate(members):
        rows[f"member {i + 1}"] = describe(artifact, Path(valid), Path(test)) | convergence(artifact, args.member_epochs)
    if len(members) == args.members:
        rows["ensemble"] = {"valid_ppl": ensemble_perplexity(members, Path(valid)),
                            "test_ppl": ensemble_perplexity(members, Path(test)),
                            "parameters": sum(parameters(m) for m in members),
                            "train_seconds": sum(train_seconds(m) for m in members)}
    for name, plan in plans.items():
        artifact = Path(plan.out_dir) / "artifact"
        if (artifact / "config.json").exists():
            rows[name] = describe(artifact, Path(valid), Path(test)) | convergence(artifact, args.student_epochs)
    write_json(args.out / "results.json", {"settings": vars(args) | {"data_dir": str(args.data_dir),
                                                                     "out": str(args.out)}, "rows": rows})
    print(f"{'model':26s} {'params':>9s} {'valid':>8s} {'test':>8s} {'self-norm test':>14s} {'train s':>8s}")
    for name, row in rows.items():
        self_norm = row.get("test", {}).get("self_normalized_ppl") if row.get("self_normalized") else None
        print(f"{name:26s} {row['parameters']:9d} {row['valid_ppl']:8.2f} {row['test_ppl']:8.2f}"
              f" {'' if self_norm is None else f'{self_norm:14.2f}':>14s} {row['train_seconds']:8.0f}")


def convergence(artifact: Path, cap: int) -> dict:
    """Epochs trained, the last epoch's dev improvement, and whether the schedule ended the run
    (annealed, then stopped) or the epoch cap did."""
    history = json.loads((artifact.parent / "history.json").read_text())
    ppl = [r["dev_normalized_ppl"] for r in history]
    last = (ppl[-2] - ppl[-1]) / ppl[-2] if len(ppl) > 1 else None
    precisions = [r.get("precision", "fp32") for r in history]  # histories before the field: fp32
    return {"epochs": len(history), "epoch_cap": cap, "last_improvement": last,
            "ended_by": "epoch cap" if len(history) >= cap else "schedule",
            "epochs_by_precision": {p: precisions.count(p) for p in dict.fromkeys(precisions)}}


def describe(artifact: Path, valid: Path, test: Path) -> dict:
    valid_eval, test_eval = evaluation(artifact, valid, "valid"), evaluation(artifact, test, "test")
    return {"artifact": str(artifact), "parameters": parameters(artifact), "train_seconds": train_seconds(artifact),
            "valid_ppl": valid_eval["normalized_ppl"], "test_ppl": test_eval["normalized_ppl"],
            "self_normalized": load_artifact(artifact).model.is_self_normalized, "test": test_eval}


if __name__ == "__main__":
    main()
