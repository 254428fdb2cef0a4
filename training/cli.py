"""`rescorer-train`: train an LSTM LM (cross-entropy or NCE), adapt one to a domain, evaluate.

    rescorer-train train --corpus ptb --loss nce --out runs/ptb-nce
    rescorer-train train --train a.txt --dev b.txt --out runs/x --resume
    rescorer-train adapt --init general/artifact --gamma 0.5 --train id.txt --dev id-dev.txt --out runs/a
    rescorer-train distill --teacher t1/artifact --teacher t2/artifact --loss tr --train a.txt --dev b.txt --out runs/s
    rescorer-train evaluate runs/ptb-nce/artifact ptb/ptb.test.txt.gz --json test.json
    torchrun --nproc-per-node 2 -m training.cli train ...   (data parallel)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields
from pathlib import Path

from rescorer.artifact import load_artifact
from rescorer.atomic import text_output
from rescorer.errors import ConfigError, InputError
from training.adaptation import ARCHITECTURE_FIELDS, architecture_of
from training.checkpoint import load_checkpoint
from training.compare import compare_models, print_comparison, teachers_dev_perplexity
from training.config import TrainConfig
from training.corpus import CorpusError, iter_sentences
from training.demo_corpus import write_demo_corpus, write_demo_domain
from training.demo_nbest import write_demo_nbest
from training.divergence import TrainingDivergedError
from training.perplexity import EvaluationResult, evaluate, recenter_log_z
from training.train import train

# the epoch budget: taken from the checkpoint on --resume unless given, and then may be raised
BUDGET_FLAGS = {"max_epochs": "maximum epochs", "anneal_epochs": "halved-rate epochs once the dev gain falls below the threshold"}
DEFAULT_DATA_DIR = os.environ.get("RESCORER_DATA_DIR", "../shared/data")
CORPORA = {  # --corpus NAME -> (train, dev, test) under --data-dir
    "ptb": ("ptb/ptb.train.txt.gz", "ptb/ptb.valid.txt.gz", "ptb/ptb.test.txt.gz"),
    "wikitext-2": ("wikitext-2/train.txt.gz", "wikitext-2/valid.txt.gz", "wikitext-2/test.txt.gz"),
}
EXIT_BAD_INPUT = EXIT_DIVERGED = 2  # bad input, and a run that diverged (a --lr too high): both need a new command
# options each subcommand does not take from TrainConfig: set otherwise, or meaningless there
ADAPTATION_FIELDS = {"init_path", "reference_path", "gamma", "reference_temperature", "cache_reference_features"}
DISTILLATION_FIELDS = {"teacher_paths", "alpha", "trust_a", "teacher_top_k", "teacher_samples", "teacher_tail",
                       "teacher_store"}
VOCABULARY_FIELDS = {"vocab_path", "vocab_size", "min_count", "unk_symbol", "subword_units", "subword_kind",
                     "sentencepiece_model"}
NOT_TRAIN_OPTIONS = ADAPTATION_FIELDS | DISTILLATION_FIELDS | {"vocab_path", "loss"}
NOT_ADAPT_OPTIONS = ({*ARCHITECTURE_FIELDS, "output_kind", "experts", "loss", "init_path", "reference_path"}
                     | VOCABULARY_FIELDS | DISTILLATION_FIELDS)
NOT_DISTILL_OPTIONS = {"init_path", "reference_path", "gamma", "loss", "teacher_paths"} | VOCABULARY_FIELDS
ADAPT_DEFAULTS = {"lr": 0.1}  # fine-tuning: a tenth of train's rate
DISTILL_HELP = {"reference_temperature": "temperature T on the teachers: softmax(o / T), exp(s / T) for a"
                                         " self-normalized one (paper 2 found T = 1 best)"}


def resolve_data_path(path: str, data_dir: str) -> str:
    """A path as given if it exists, else relative to the data directory."""
    if Path(path).exists() or Path(path).is_absolute():
        return path
    candidate = Path(data_dir) / path
    return str(candidate) if candidate.exists() else path


def _add_run_options(p: argparse.ArgumentParser, train_help: str, dev_help: str) -> None:
    p.add_argument("--train", action="append", help=train_help + "; repeat it for several corpora read in order:"
                   " each is laid across every batch column in turn, so every column reads the first corpus,"
                   " then the second, and an epoch ends on the last (train on general text, then in-domain"
                   " text seen last)")
    p.add_argument("--dev", help=dev_help)
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                   help=f"where relative corpus paths are looked up (default: {DEFAULT_DATA_DIR})")
    p.add_argument("--out", required=True, help="run directory (checkpoints; the artifact in OUT/artifact)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train an LM and write an artifact", description="Train an LSTM LM:"
                       " softmax or mixture-of-softmaxes cross-entropy, or self-normalized NCE.")
    p.add_argument("--corpus", choices=sorted(CORPORA), help="a known corpus under --data-dir")
    _add_run_options(p, "training text, one sentence per line (plain or .gz)",
                     "held-out text for the schedule and model selection")
    p.add_argument("--vocab", dest="vocab_path", help=_help("vocab_path"))
    p.add_argument("--loss", choices=["ce", "nce"], default="nce", help=_help("loss"))
    _add_config_options(p, exclude=NOT_TRAIN_OPTIONS)


def _add_adapt_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "adapt", help="adapt an artifact to in-domain text: NCE fine-tuning or NCE+KLD (paper 1)",
        description="Continue training an artifact on in-domain text. Its vocabulary, architecture"
        " and log_z are kept; gamma < 1 adds KL-divergence regularization toward the frozen"
        " --reference (paper 1, Eq. 15-21); gamma = 1 is plain NCE fine-tuning.")
    p.add_argument("--init", dest="init_path", required=True, help="artifact to start from (weights, vocabulary)")
    p.add_argument("--reference", dest="reference_path", help="frozen self-normalized artifact with the same"
                   " vocabulary that the KLD term pulls toward (default: --init)")
    _add_run_options(p, "in-domain training text, one sentence per line (plain or .gz)",
                     "in-domain held-out text for the schedule and model selection")
    _add_config_options(p, exclude=NOT_ADAPT_OPTIONS, defaults=ADAPT_DEFAULTS)


def _add_distill_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distill", help="train a student from a teacher ensemble (paper 2: KL, interpolation, trust"
        " regularization; nce-tr for a self-normalized student)",
        description="Train a student LM from frozen teachers whose probabilities are averaged."
        " ce: cross-entropy only (no teacher term); kl: KL only (Eq. 4); interp: alpha CE + (1 - alpha) KL"
        " (Eq. 1); tr: R(y) CE + KL with R(y) = -a ln(1 - Q(y|c)) (Eq. 5-6); nce-tr: a self-normalized"
        " student trained with NCE+KLD toward the teachers at gamma = R(y) / (1 + R(y)).")
    p.add_argument("--teacher", dest="teacher_paths", action="append", required=True,
                   help="a teacher artifact; repeat for an ensemble (one vocabulary, also the student's)")
    p.add_argument("--loss", choices=["ce", "kl", "interp", "tr", "nce-tr"], required=True,
                   help="the distillation loss (see above)")
    _add_run_options(p, "training text, one sentence per line (plain or .gz)",
                     "held-out text for the schedule and model selection")
    _add_config_options(p, exclude=NOT_DISTILL_OPTIONS, help_text=DISTILL_HELP)


def _help(name: str, default=None, help_text: dict[str, str] | None = None) -> str:
    """A field's help from TrainConfig, with its default unless the text already says it."""
    spec = next(f for f in fields(TrainConfig) if f.name == name)
    text = (help_text or {}).get(name, spec.metadata["help"])
    default = spec.default if default is None else default
    return text if default is None or "default" in text else f"{text} (default: {_shown(default)})"


def _shown(value) -> str:
    return str(value).lower() if isinstance(value, bool) else "none" if value == () else str(value)


def _add_config_options(p: argparse.ArgumentParser, exclude: set[str], help_text: dict[str, str] | None = None,
                        defaults: dict | None = None) -> None:
    """One --kebab-case option per remaining TrainConfig field, typed and described by the field."""
    overrides = defaults or {}
    for spec in fields(TrainConfig):
        name = spec.name
        if name in {"train_path", "dev_path", "out_dir", "later_train_paths", *exclude}:
            continue
        default = overrides.get(name, spec.default)
        flag, text = "--" + name.replace("_", "-"), _help(name, default, help_text)
        if name in BUDGET_FLAGS:  # None: taken from the checkpoint on --resume
            p.add_argument(flag, type=int, default=None, help=f"{text}; may be raised on --resume")
        elif name == "output_kind":
            p.add_argument(flag, choices=["auto", "self_normalized", "softmax", "mos"], default=default, help=text)
        elif isinstance(default, bool):
            p.add_argument(flag, type=_parse_bool, default=default, metavar="{true,false}", help=text)
        else:
            kind = int if "int" in str(spec.type) else float if "float" in str(spec.type) else str
            p.add_argument(flag, type=kind, default=default, help=text)


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _refuse_changed_options(args: argparse.Namespace, given: set[str], stored: dict) -> None:
    """A resumed run keeps the configuration it began with: an option given with --resume that
    differs from it (another --hidden-dim, --lr or --train) would otherwise be ignored silently.
    Only the epoch budget and the device may change."""
    may_change = {*BUDGET_FLAGS, "device", "out_dir"}
    changed = []
    for dest in sorted(given):
        name = {"train": "train_path", "dev": "dev_path"}.get(dest, dest)
        if name in may_change or name not in stored:
            continue
        value = getattr(args, dest)
        if name == "train_path":  # every corpus, in order, as the absolute paths the run stores
            value = [str(Path(resolve_data_path(v, args.data_dir)).absolute()) for v in value]
            stored = {**stored, name: [str(Path(stored[name]).absolute()),
                                       *(str(Path(p).absolute()) for p in stored.get("later_train_paths", []))]}
        elif name in ("dev_path", "vocab_path") and value is not None:
            value = str(Path(resolve_data_path(value, args.data_dir)).absolute())
            stored = {**stored, name: None if stored[name] is None else str(Path(stored[name]).absolute())}
        if isinstance(value, tuple | list):
            value = list(value)
        if value != stored[name]:
            changed.append(f"--{dest.replace('_', '-')} {_shown(value)} (the run has {_shown(stored[name])})")
    if changed:
        raise ConfigError(f"{Path(args.out) / 'checkpoint.pt'}: a resumed run keeps its configuration, and these"
                          f" options differ from it: {'; '.join(changed)}. On --resume only --max-epochs,"
                          " --anneal-epochs and --device may change; start a new run in another --out for the rest")


def _given_options(argv: list[str] | None) -> set[str]:
    """The destinations given on the command line, told apart from defaults by parsing again
    with every default suppressed (argparse keeps no record of which were given)."""
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                for option in subparser._actions:
                    option.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def _config_from_args(args: argparse.Namespace, given: set[str] = frozenset()) -> TrainConfig:
    if args.command == "adapt" and not args.resume:
        args.reference_path = args.reference_path or args.init_path
        args.loss = "nce"
        for name, value in architecture_of(args.init_path).items():
            setattr(args, name, value)
    if args.command == "distill" and not args.resume and args.loss == "nce-tr" and args.output_kind == "auto":
        args.output_kind = "self_normalized"
    if args.resume:
        stored = load_checkpoint(Path(args.out) / "checkpoint.pt")["config"]
        _refuse_changed_options(args, given, stored)
        overrides = {"out_dir": args.out, "device": args.device}
        overrides.update({name: getattr(args, name) for name in BUDGET_FLAGS if getattr(args, name) is not None})
        return TrainConfig.from_dict({**stored, **overrides})
    train_paths, dev_path = args.train or [], args.dev
    if getattr(args, "corpus", None):
        train_paths = train_paths or [CORPORA[args.corpus][0]]
        dev_path = dev_path or CORPORA[args.corpus][1]
    if not train_paths or not dev_path:
        raise CorpusError("give --train and --dev, or --corpus")
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
              if f.name not in ("train_path", "dev_path", "out_dir", "later_train_paths") and hasattr(args, f.name)}
    for name in BUDGET_FLAGS:
        values[name] = getattr(args, name) if getattr(args, name) is not None else getattr(TrainConfig, name)
    return TrainConfig(train_path=resolve_data_path(train_paths[0], args.data_dir),
                       later_train_paths=tuple(resolve_data_path(p, args.data_dir) for p in train_paths[1:]),
                       dev_path=resolve_data_path(dev_path, args.data_dir), out_dir=args.out, **values)


def _cmd_train(args: argparse.Namespace, given: set[str]) -> int:
    config = _config_from_args(args, given)
    result = train(config, resume=args.resume, progress=not args.no_progress)
    if result.artifact_path is not None:
        dev = result.final_dev
        print(f"artifact: {result.artifact_path}")
        if config.model_output_kind == "self_normalized":
            print(f"dev normalized ppl {dev['normalized_ppl']:.2f}, self-normalized ppl"
                  f" {dev['self_normalized_ppl']:.2f}, log Z mean {dev['log_z_mean']:+.4f} var {dev['log_z_var']:.4f}")
        else:  # scored with its softmax: self-normalized figures mean nothing for it
            print(f"dev perplexity {dev['normalized_ppl']:.2f}")
        if config.teacher_paths:  # distillation pays only where the teachers are clearly better
            _print_teachers_beside(config, dev["normalized_ppl"])
    return 0


def _print_teachers_beside(config: TrainConfig, student_ppl: float) -> None:
    teachers = teachers_dev_perplexity(list(config.teacher_paths), config.dev_path)
    for name, ppl in teachers.items():
        print(f"  {'teachers, ensemble' if name == 'ensemble' else 'teacher ' + name}: dev perplexity {ppl:.2f}")
    best = min(teachers.values())
    if best >= 0.95 * student_ppl:
        print(f"note: the teachers ({best:.2f}) are not clearly better than this student ({student_ppl:.2f}): a"
              " student learns little from them; train better teachers, or the student without them (--loss ce)")


def _add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="perplexities and self-normalization of an artifact on a text")
    p.add_argument("lm_dir", help="artifact directory")
    p.add_argument("text", help="one sentence per line (plain or .gz); relative paths also tried under --data-dir")
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                   help=f"where relative paths are looked up (default: {DEFAULT_DATA_DIR})")
    p.add_argument("--json", help="also write every figure as JSON to this file ('-' for stdout)")
    p.add_argument("--recenter", action="store_true",
                   help="shift the artifact's log_z by the measured mean log Z(h) (use a dev set, not test)")
    p.add_argument("--max-tokens", type=int, default=8192, help="padded tokens per batch (default: 8192)")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    artifact = load_artifact(args.lm_dir)
    if args.recenter and not artifact.model.is_self_normalized:
        raise InputError(f"{args.lm_dir}: --recenter shifts log_z, which only a self_normalized model's scores"
                         f" use; this model is {artifact.model.config.output_kind!r} and is scored with its full"
                         " normalization (nothing to re-center)")
    text = resolve_data_path(args.text, args.data_dir)
    vocab = artifact.vocab
    sentences, oov, words_in_text = [], 0, 0
    for words in iter_sentences(text):
        ids = artifact.token_ids(words)
        oov += ids.count(vocab.unk_id) if artifact.tokenizer is not None else \
            sum(1 for w in words if w not in vocab and w != vocab.unk_symbol)
        words_in_text += len(words)
        sentences.append(ids)
    if not sentences:
        raise CorpusError(f"{text}: no sentences to evaluate")
    num_words = words_in_text if artifact.tokenizer is not None else None
    result = evaluate(artifact.model, sentences, vocab.bos_id, vocab.eos_id, args.max_tokens, num_oov=oov,
                      num_words=num_words)
    report = {"artifact": str(args.lm_dir), "text": text, **result.to_dict()}
    _print_evaluation(result, text)
    if args.recenter:
        new_log_z = recenter_log_z(args.lm_dir, result, text)
        artifact = load_artifact(args.lm_dir)
        after = evaluate(artifact.model, sentences, vocab.bos_id, vocab.eos_id, args.max_tokens, num_oov=oov,
                         num_words=num_words)
        print(f"re-centered: log_z {result.log_z:.4f} -> {new_log_z:.4f}")
        _print_evaluation(after, text)
        report["recentered"] = after.to_dict()
    if args.json:
        with text_output(args.json) as out:  # '-' is stdout; a file is replaced whole or not at all
            out.write(json.dumps(report, indent=2) + "\n")
    return 0


def _print_evaluation(result: EvaluationResult, text: str) -> None:
    print(f"{text}: {result.num_sentences} sentences, {result.num_tokens} tokens, {result.num_oov} OOV")
    print(f"  normalized perplexity       {result.normalized_ppl:10.3f}")
    if result.num_words is not None:  # a subword LM: the figures above are per piece
        print(f"  per piece above; per word   {result.per_word_ppl:10.3f}"
              f"  ({result.num_words} words, {result.num_tokens - result.num_sentences} pieces)")
    print(f"  self-normalized perplexity  {result.self_normalized_ppl:10.3f}")
    print(f"  log Z(h): mean {result.log_z_mean:+.4f}  var {result.log_z_var:.4f}"
          f"  mean |log Z| {result.log_z_abs_mean:.4f}  (log_z constant {result.log_z:.4f})")


def _add_demo_corpus_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo-corpus", help="write the deterministic toy corpus (train/dev/test.txt), a"
                       " one-topic sub-domain (domain/train|dev|test.txt) and synthetic N-best lists"
                       " (nbest/dev.jsonl, nbest/test.jsonl)")
    p.add_argument("out_dir", help="directory to write into (created if needed)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rescorer-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train_parser(sub)
    _add_adapt_parser(sub)
    _add_distill_parser(sub)
    _add_evaluate_parser(sub)
    p = sub.add_parser("compare", help="several artifacts on one text: parameters, perplexity, scoring speed")
    p.add_argument("lm_dirs", nargs="+", help="artifact directories")
    p.add_argument("--text", required=True, help="one sentence per line (plain or .gz)")
    p.add_argument("--json", help="also write the rows as JSON to this file ('-' for stdout)")
    _add_demo_corpus_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in ("train", "adapt", "distill"):
            return _cmd_train(args, _given_options(argv) if args.resume else set())
        if args.command == "evaluate":
            return _cmd_evaluate(args)
        if args.command == "compare":
            rows = compare_models(args.lm_dirs, args.text)
            print_comparison(rows, args.text)
            if args.json:
                with text_output(args.json) as out:
                    out.write(json.dumps(rows, indent=2) + "\n")
            return 0
        paths = {**write_demo_corpus(args.out_dir), **write_demo_domain(Path(args.out_dir) / "domain"),
                 **{f"nbest-{k}": v for k, v in
                                                        write_demo_nbest(Path(args.out_dir) / "nbest").items()}}
        print("\n".join(str(p) for p in paths.values()))
        return 0
    except TrainingDivergedError as e:
        print(f"rescorer-train: error: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    except InputError as e:  # bad input only: anything else is a bug and shows as one
        print(f"rescorer-train: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
