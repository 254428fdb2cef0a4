"""PTB distillation, as paper 2 Tables 2 and 3, scaled down to 2 CPU cores.

    python experiments/ptb_distillation.py --data-dir ../shared/data --out runs/ptb-distill
    python experiments/ptb_distillation.py --out runs/ptb-distill-10k-softmax --train-sentences 10000 \
        --member-recipe softmax-dropout --member-hidden 256 --member-epochs 20 --student-epochs 16 \
        --precision bf16 --only ...          # the seeded table of docs/RESULTS.md, row group by row group

Teachers: an ensemble of --members mixture-of-softmaxes LSTMs (--member-layers x --member-hidden,
--experts K, embedding = hidden), trained with cross-entropy and the AWD-LSTM regularizations
(variational dropout 0.25, DropConnect 0.25 on W_hh, embedding dropout 0.05, AR 2, TAR 1), one
seed each; their probabilities are averaged. With --member-recipe softmax-dropout the members
are softmax LSTMs with dropout --member-dropout instead: on the first 10,000 sentences the AWD
members ended at valid 194.7 and 200.3 (ensemble 178.6), level with a 1 x 72 student trained
alone (179.6), so they had nothing to teach (docs/results/ptb_distillation_10k_awd_teachers.json). Students: 1 x --student-hidden LSTM (embedding =
hidden), about a third of one member's parameters, trained on PTB train with the teachers:
TR (a = --trust-a), KL only, fixed interpolation alpha in --alphas, TR with dropout 0.25;
without a teacher: CE only with dropout 0.25, NCE alone (self-normalized, dropout 0.25); and the
self-normalized `nce-tr` student (NCE+KLD toward the teachers at gamma = R / (1 + R)).
Students other than the "with dropout" ones use no dropout (paper 2: regularization off for
distillation). Every model: normalized valid and test perplexity (sentences from a zero state,
as the rescorer scores them), parameters, training seconds; self-normalized models also their
self-normalized perplexity and log Z(h) statistics. The ensemble is scored token by token (the
log of the members' mean probability).

Every student row trains once per seed in --seeds (its initialization, dropout, noise and, for the
drawn store, the draw), in OUT/{row}-seed{s}; results.json gives each row's mean and standard
deviation over the seeds finished, every seed's valid and test perplexity, and `paired`: the
paired relative differences the table is read for (TR against KL only, the interpolations
against KL only, each distilled row against CE only, ...), with their 95 % t intervals
(experiments/seed_statistics.py). --train-sentences N trains every model on the first N
sentences of PTB train, so the table fits 2 cores with several seeds.

Every model is a resumable run directory, so a stopped run continues where it was. `--only ROW
...` trains just those rows (and the members first when a named row needs the teachers), so two
one-thread processes can share the machine: `--only "member 1"` beside `--only "member 2"`, the
students without a teacher beside the members, then the distilled students in two groups.
Seeds go one at a time across the wanted rows, so every row has its first seed before any has a
second. Every invocation rewrites OUT/results.json with all the rows finished so far.

Cost on the project's 2-core machine (one thread per process): the members train a K-fold
softmax (about 750 s an epoch for 1 x 200, K = 2, on all of PTB train, on one core); the
distilled students read the teachers from the trainer's default store
(training.config.DEFAULT_TEACHER_STORE: the top 128 plus 128 words drawn from the rest for KL,
interpolation and TR, one store per seed since the draw is the seed's; the top 256 for nce-tr)
in OUT/teachers, so an epoch costs about a plain one instead of 9.5x (docs/RESULTS.md);
`--teacher-top-k 0` reads the live teachers instead. Every model trains until its schedule ends
(full rate while dev improves by 0.3 % or more, then 5 halved epochs) or the epoch cap;
results.json says which, with the last epoch's improvement. Each run's history.json records its
epoch times, and results.json the training seconds of every row.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.adaptation_runs import evaluation, ptb_train_head, run, train_seconds, write_json
from experiments.seed_statistics import mean_sd, paired_relative_difference
from rescorer.artifact import load_artifact, parameter_count, read_artifact_config
from rescorer.model import ModelConfig
from rescorer.sentence_scoring import score_sentences
from training.config import TrainConfig
from training.corpus import iter_sentences

TEACHER_REGULARIZATION = dict(variational_dropout=0.25, weight_drop=0.25, embedding_dropout=0.05,
                              activation_reg=2.0, temporal_activation_reg=1.0)


def parameters(artifact: Path) -> int:
    return parameter_count(ModelConfig(**read_artifact_config(artifact)["model"]))


def member_recipe(args: argparse.Namespace) -> dict:
    if args.member_recipe == "softmax-dropout":
        return {"dropout": args.member_dropout}
    return {"output_kind": "mos", "experts": args.experts, **TEACHER_REGULARIZATION}


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
    parser.add_argument("--member-recipe", choices=("mos-awd", "softmax-dropout"), default="mos-awd",
                        help="mos-awd: a mixture of --experts softmaxes with the AWD regularizations (paper 2's"
                             " teachers); softmax-dropout: a softmax LSTM with dropout --member-dropout, for a"
                             " small --train-sentences, where the AWD members stop before they are ahead of the"
                             " students")
    parser.add_argument("--member-dropout", type=float, default=0.5, help="with --member-recipe softmax-dropout")
    parser.add_argument("--member-epochs", type=int, default=40,
                        help="epoch cap; the schedule (anneal, then stop) usually ends a run before it")
    parser.add_argument("--student-hidden", type=int, default=72, help="about a third of a member's parameters")
    parser.add_argument("--student-epochs", type=int, default=40, help="epoch cap, as --member-epochs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--trust-a", type=float, default=0.1)
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.5, 0.2, 0.1])
    parser.add_argument("--train-sentences", type=int, default=0,
                        help="train every model on the first N sentences of PTB train (0: all of it)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3],
                        help="the students' seeds (initialization, dropout, noise); each row"
                             " trains once per seed, the members once each")
    parser.add_argument("--teacher-top-k", type=int, default=None,
                        help="the distilled students read the teachers stored as their top k (0: exact, live;"
                             " default: the trainer's store for each loss, training.config.DEFAULT_TEACHER_STORE)")
    parser.add_argument("--teacher-samples", type=int, default=None,
                        help="and this many words per position drawn from the rest (default: the trainer's)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="training arithmetic (bf16: CPUs with bf16 arithmetic, or CUDA). May change when a run"
                             " resumes; results.json counts each run's epochs by precision. The PTB teachers'"
                             " recipe in bf16 trained 1.75x as fast at +0.87 %% valid perplexity after 2 epochs"
                             " (experiments/bf16_training.py --kinds mos; docs/RESULTS.md)")
    parser.add_argument("--only", nargs="*", help="train only these rows (names as in results.json)")
    args = parser.parse_args()
    ptb = args.data_dir / "ptb"
    train_text, valid, test = (str(ptb / f"ptb.{n}.txt.gz") for n in ("train", "valid", "test"))
    if args.train_sentences:
        args.out.mkdir(parents=True, exist_ok=True)
        train_text = str(ptb_train_head(args.data_dir, args.out, args.train_sentences))

    def config(name: str, hidden: int, layers: int, epochs: int, **values) -> TrainConfig:
        return TrainConfig(train_path=train_text, dev_path=valid, out_dir=str(args.out / name),
                           embedding_dim=hidden, hidden_dim=hidden, num_layers=layers, batch_size=args.batch_size,
                           max_epochs=epochs, precision=args.precision, **values)

    member_configs = {
        f"member {i + 1}": config(f"member{i + 1}", args.member_hidden, args.member_layers, args.member_epochs,
                                  loss="ce", seed=17 + 14 * i, **member_recipe(args))
        for i in range(args.members)}
    teachers = tuple(str(Path(c.out_dir) / "artifact") for c in member_configs.values())

    def student(name: str, **values) -> dict[int, TrainConfig]:
        """The row's run per seed, in OUT/{name}-seed{s}."""
        values = {"dropout": 0.0, **values}
        if values.get("teacher_paths"):  # the distilled students share the stores in OUT/teachers
            values |= {"teacher_top_k": args.teacher_top_k, "teacher_samples": args.teacher_samples}
            if args.teacher_top_k != 0:
                values["teacher_store"] = str(args.out / "teachers")
        return {seed: config(f"{name}-seed{seed}", args.student_hidden, 1, args.student_epochs, seed=seed, **values)
                for seed in args.seeds}

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
    need_teachers = any(wanted(n) and plans[n][args.seeds[0]].teacher_paths for n in plans)
    for name, member in member_configs.items():
        if wanted(name) or need_teachers:
            run(member)
    for seed in args.seeds:  # seed by seed: every row gets its first seed before any gets a second
        for name, plan in plans.items():
            if wanted(name):
                run(plan[seed])
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
        # every finished seed on disk, also those of an earlier invocation with other --seeds
        directory = Path(plan[args.seeds[0]].out_dir)
        runs = {int(p.parent.name.rsplit("-seed", 1)[1]): p
                for p in sorted(directory.parent.glob(f"{directory.name.rsplit('-seed', 1)[0]}-seed*/artifact"))
                if (p / "config.json").exists()}
        if runs:
            rows[name] = student_row({seed: describe(a, Path(valid), Path(test)) | convergence(a, args.student_epochs)
                                      for seed, a in sorted(runs.items())})
    write_json(args.out / "results.json", {"settings": vars(args) | {"data_dir": str(args.data_dir),
                                                                     "out": str(args.out), "train_text": train_text},
                                           "rows": rows, "paired": paired_rows(rows)})
    print(f"{'model':26s} {'params':>9s} {'seeds':>5s} {'valid':>15s} {'test':>15s} {'self-norm test':>14s}"
          f" {'train s':>8s}")
    for name, row in rows.items():
        self_norm = row.get("test", {}).get("self_normalized_ppl") if row.get("self_normalized") else None
        seeds = len(row.get("seeds", [None]))
        print(f"{name:26s} {row['parameters']:9d} {seeds:5d} {spread(row, 'valid'):>15s} {spread(row, 'test'):>15s}"
              f" {'' if self_norm is None else f'{self_norm:14.2f}':>14s} {row['train_seconds']:8.0f}")
    for p in paired_rows(rows):
        interval = p["valid"]["interval_percent"]
        shown = "" if interval is None else f" [{interval[0]:+.1f}, {interval[1]:+.1f}]"  # None: one seed
        print(f"{p['row']} against {p['against']}: valid {p['valid']['mean_percent']:+.1f} %{shown}"
              f" over seeds {p['valid']['seeds']}")


# (row, against): the comparisons the table is read for (paper 2, Tables 2-3)
COMPARISONS = (("TR", "KL only"), *((f"interp alpha {a}", "KL only") for a in ("0.5", "0.2", "0.1")),
               ("TR", "CE only, dropout"), ("KL only", "CE only, dropout"),
               *((f"interp alpha {a}", "CE only, dropout") for a in ("0.5", "0.2", "0.1")),
               ("TR, dropout", "TR"), ("nce-tr (self-normalized)", "NCE alone, dropout"))


def student_row(by_seed: dict[int, dict]) -> dict:
    """One row over its seeds: the mean and sd of valid and test perplexity, each seed's value and
    run; the seed-independent fields (parameters, self_normalized) from the first seed."""
    first = next(iter(by_seed.values()))
    valid = {s: r["valid_ppl"] for s, r in by_seed.items()}
    test = {s: r["test_ppl"] for s, r in by_seed.items()}
    return {"seeds": sorted(by_seed), "valid_ppl_by_seed": valid, "test_ppl_by_seed": test,
            "valid_ppl": mean_sd(list(valid.values()))["mean"], "test_ppl": mean_sd(list(test.values()))["mean"],
            "valid_ppl_sd": mean_sd(list(valid.values()))["sd"], "test_ppl_sd": mean_sd(list(test.values()))["sd"],
            "parameters": first["parameters"], "self_normalized": first["self_normalized"],
            "train_seconds": mean_sd([r["train_seconds"] for r in by_seed.values()])["mean"],
            "test": first["test"], "by_seed": dict(by_seed)}


def paired_rows(rows: dict) -> list[dict]:
    """Paired relative differences (percent, 95 % t interval) of valid and test perplexity over the
    seeds both rows have, for each comparison in COMPARISONS whose rows exist."""
    paired = []
    for row, against in COMPARISONS:
        if row in rows and against in rows and "seeds" in rows[row] and "seeds" in rows[against]:
            valid = paired_relative_difference(rows[row]["valid_ppl_by_seed"], rows[against]["valid_ppl_by_seed"])
            test = paired_relative_difference(rows[row]["test_ppl_by_seed"], rows[against]["test_ppl_by_seed"])
            if valid is not None:
                paired.append({"row": row, "against": against, "valid": valid, "test": test})
    return paired


def spread(row: dict, split: str) -> str:
    sd = row.get(f"{split}_ppl_sd")
    return f"{row[f'{split}_ppl']:.2f}" + ("" if sd is None else f" +- {sd:.2f}")


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
    loaded = load_artifact(artifact)
    distillation = loaded.provenance.get("distillation") or {}
    store = ({"teacher_top_k": distillation.get("teacher_top_k"), "teacher_samples": distillation.get("teacher_samples")}
             if distillation else {})  # what the student read: 0 is the live teachers
    return {"artifact": str(artifact), "parameters": parameters(artifact), "train_seconds": train_seconds(artifact),
            "valid_ppl": valid_eval["normalized_ppl"], "test_ppl": test_eval["normalized_ppl"],
            "self_normalized": loaded.model.is_self_normalized, "test": test_eval, **store}


if __name__ == "__main__":
    main()
