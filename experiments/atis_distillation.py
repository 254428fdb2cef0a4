"""ATIS: teachers trained on the in-domain text distilled into a student a third their size, on
real 5-best lists (paper 2, Table 4's question on a narrow domain).

    python experiments/atis_distillation.py --data-dir ../shared/data --out runs/atis-distill

Data: the split of experiments/atis_adaptation.py (HyPoradise v0 ATIS `train_atis`, sorted by
id, shuffled with --seed; the first 10 % are the dev lists and the ID dev text, the references of
the rest the training text); test: the 809 `test_atis` 5-best lists. One vocabulary, every word
of the training text (the teachers', which the students share).
Models (1 layer, embedding = hidden):
- members: --members mixture-of-softmaxes teachers (1 x --member-hidden, K = 2), cross-entropy
  with the AWD regularizations of experiments/ptb_distillation.py, one seed each;
- ID (no teacher): a 1 x --member-hidden NCE model, the adaptation experiment's ID row on this
  vocabulary;
- students, 1 x --student-hidden (at most a third of a member's parameters; the run says how
  much): CE only (dropout 0.25) and NCE alone (dropout 0.25) without a teacher; KL only, TR and
  the self-normalized `nce-tr` with the members' averaged distribution (exact: the vocabulary is
  small, so the stored teachers hold every word). Each student trains once per seed in
  --student-seeds (its initialization, batches' noise and dropout; the members keep theirs).
Every model trains until its schedule ends or --epochs. Each rescores the test lists with its
weights tuned on the dev lists (`rescorer eval`'s path, rescorer.eval_command.run_evaluation):
test WER with paired-bootstrap intervals against the first pass, the ID row and the TR student;
dev and test perplexities; parameters; and hypotheses/s through the rescorer on the test lists,
the models taking turns in each of 3 rounds, best of 3 (training.compare.scoring_seconds); and the members' ensemble's ID dev
perplexity (the log of their mean probability), what the students are taught. The rows are the
first seed's; `seeds` gives every student's ID dev perplexity and test WER per seed with their
mean and standard deviation, and paired differences over the seeds (experiments/seed_statistics.py,
95 % t intervals: the spread between trainings, not the test set's sampling, which the rows'
bootstrap intervals give): TR against KL only and against CE only, nce-tr against NCE alone.
Resumable run directories; OUT/results.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.adaptation_runs import evaluation, run, train_seconds, write_json
from experiments.atis_adaptation import AtisTestLists, write_atis_split
from experiments.ptb_distillation import TEACHER_REGULARIZATION, convergence, ensemble_perplexity, parameters
from experiments.seed_statistics import mean_sd, paired_difference, paired_relative_difference
from rescorer.artifact import load_artifact
from rescorer.wer.bootstrap import paired_bootstrap
from training.compare import scoring_seconds
from training.config import TrainConfig


def prepare(data_dir: Path, out: Path, seed: int) -> dict[str, Path]:
    """The adaptation experiment's ATIS split (same sort, shuffle and 10 % held out)."""
    text = out / "text"
    paths = {"id_train": text / "id_train.txt", "id_dev": text / "id_dev.txt", "dev_lists": text / "dev_atis.json.gz"}
    if not paths["dev_lists"].exists():
        write_atis_split(data_dir, paths, seed)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("runs/atis-distill"))
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--member-hidden", type=int, default=256)
    parser.add_argument("--student-hidden", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=40, help="epoch cap of every model (the schedule ends most runs)")
    parser.add_argument("--trust-a", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1, help="the shuffle of the split")
    parser.add_argument("--student-seeds", type=int, nargs="+", default=[1])
    args = parser.parse_args()
    paths = prepare(args.data_dir, args.out, args.seed)
    id_dev = str(paths["id_dev"])

    def config(name: str, hidden: int, **values) -> TrainConfig:
        return TrainConfig(train_path=str(paths["id_train"]), dev_path=id_dev, out_dir=str(args.out / name),
                           embedding_dim=hidden, hidden_dim=hidden, num_layers=1, batch_size=32,
                           max_epochs=args.epochs, **values)

    members = [run(config(f"member{i + 1}", args.member_hidden, loss="ce", output_kind="mos", experts=2,
                          seed=17 + 14 * i, **TEACHER_REGULARIZATION)) for i in range(args.members)]
    teachers = tuple(str(m) for m in members)
    models = {f"member {i + 1}": m for i, m in enumerate(members)}
    models["ID (NCE, no teacher)"] = run(config("id_nce", args.member_hidden, loss="nce", dropout=0.25))
    small = args.student_hidden
    live = {"teacher_top_k": 0}  # the exact teachers at every step, as docs/RESULTS.md's ATIS rows were measured
    students = {
        "CE only, dropout": ("ce_dropout", {"loss": "ce", "dropout": 0.25}),
        "NCE alone, dropout": ("nce_dropout", {"loss": "nce", "dropout": 0.25}),
        "KL only": ("kl", {"loss": "kl", "teacher_paths": teachers, "dropout": 0.0, **live}),
        "TR": ("tr", {"loss": "tr", "teacher_paths": teachers, "trust_a": args.trust_a, "dropout": 0.0, **live}),
        "nce-tr (self-normalized)": ("nce_tr", {"loss": "nce-tr", "teacher_paths": teachers,
                                                "trust_a": args.trust_a, "dropout": 0.0, **live}),
    }
    first_seed, *other_seeds = args.student_seeds
    for name, (directory, values) in students.items():  # the first seed keeps the run names of one seed
        models[name] = run(config(directory if first_seed == 1 else f"{directory}-seed{first_seed}", small,
                                  seed=first_seed, **values))

    lists = AtisTestLists.read(args.data_dir, paths["dev_lists"])
    test_utterances, table, first_errors = lists.utterances, lists.table, lists.first_errors
    member_parameters = parameters(members[0])
    rows, errors = {}, {}
    for name, artifact_path in models.items():
        document, test, errors[name] = lists.rescore(artifact_path, args.out / "reports" / artifact_path.parent.name)
        evaluation_row = test["evaluation"]
        rows[name] = {"artifact": str(artifact_path), "parameters": parameters(artifact_path),
                      "of_a_member": parameters(artifact_path) / member_parameters,
                      "weights": document["weights"], "test_wer": evaluation_row["rescored"]["wer"],
                      "vs_first_pass": evaluation_row["bootstrap"],
                      "id_dev": evaluation(artifact_path, paths["id_dev"], "id_dev"),
                      "train_seconds": train_seconds(artifact_path)} | convergence(artifact_path, args.epochs)
        print(f"{name:26s} {rows[name]['parameters']:9d} params, ID dev ppl {rows[name]['id_dev']['normalized_ppl']:7.2f},"
              f" test WER {100 * rows[name]['test_wer']:.2f} %", flush=True)
    seeded = {name: {first_seed: (rows[name]["id_dev"]["normalized_ppl"], rows[name]["test_wer"])}
              for name in students}
    for seed in other_seeds:
        for name, (directory, values) in students.items():
            artifact_path = run(config(f"{directory}-seed{seed}", small, seed=seed, **values))
            _, test, _ = lists.rescore(artifact_path, args.out / "reports" / artifact_path.parent.name)
            seeded[name][seed] = (evaluation(artifact_path, paths["id_dev"], "id_dev")["normalized_ppl"],
                                  test["evaluation"]["rescored"]["wer"])
            print(f"{name:26s} seed {seed}: ID dev ppl {seeded[name][seed][0]:7.2f},"
                  f" test WER {100 * seeded[name][seed][1]:.2f} %", flush=True)
    for name in rows:
        rows[name]["minus_id"] = paired_bootstrap(errors["ID (NCE, no teacher)"], errors[name], table.ref_words).to_dict()
        rows[name]["minus_tr"] = paired_bootstrap(errors["TR"], errors[name], table.ref_words).to_dict()
    sentences = [h.words for u in test_utterances for h in u.hyps]
    seconds = scoring_seconds([load_artifact(p) for p in models.values()], sentences)
    speeds = {name: len(sentences) / s for name, s in zip(models, seconds, strict=True)}
    for name, speed in speeds.items():
        rows[name]["hyps_per_s"] = speed
    first_pass = first_errors.sum() / table.ref_words.sum()
    ensemble = {"id_dev_ppl": ensemble_perplexity(members, paths["id_dev"]),
                "parameters": sum(parameters(m) for m in members)}
    print(f"ensemble of the members: ID dev ppl {ensemble['id_dev_ppl']:.2f}", flush=True)
    write_json(args.out / "results.json", {"settings": vars(args) | {"data_dir": str(args.data_dir), "out": str(args.out)},
                                           "first_pass_wer": float(first_pass), "ensemble": ensemble, "rows": rows,
                                           "seeds": seed_table(seeded)})
    print(f"first pass {100 * first_pass:.2f} %; hypotheses/s: "
          + ", ".join(f"{n} {s:,.0f}" for n, s in speeds.items()))


def seed_table(seeded: dict[str, dict[int, tuple[float, float]]]) -> dict:
    """Per student: each seed's ID dev perplexity and test WER, their mean and sd; and the paired
    differences between students over the seeds they share."""
    ppl = {name: {s: v[0] for s, v in by_seed.items()} for name, by_seed in seeded.items()}
    wer = {name: {s: v[1] for s, v in by_seed.items()} for name, by_seed in seeded.items()}
    students = {name: {"id_dev_ppl": {str(s): v for s, v in ppl[name].items()} | {"summary": mean_sd(list(ppl[name].values()))},
                       "test_wer": {str(s): v for s, v in wer[name].items()} | {"summary": mean_sd(list(wer[name].values()))}}
                for name in seeded}
    pairs = [("TR", "KL only"), ("TR", "CE only, dropout"), ("KL only", "CE only, dropout"),
             ("nce-tr (self-normalized)", "NCE alone, dropout")]
    paired = [{"row": a, "against": b, "id_dev_ppl": paired_relative_difference(ppl[a], ppl[b]),
               "test_wer": paired_difference(wer[a], wer[b], scale=100.0, unit="points")} for a, b in pairs]
    return {"students": students, "paired": paired}


if __name__ == "__main__":
    main()
