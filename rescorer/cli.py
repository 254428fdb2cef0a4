"""`rescorer`: score sentences, rescore N-best lists, run WER evaluations, convert formats.

    rescorer score LM_DIR text costs            Kaldi sentence scoring: `key w w ..` in, `key cost` out
    rescorer rescore LM_DIR nbest.jsonl --weights report/report.json --out-jsonl out.jsonl
    rescorer eval LM_DIR --dev dev.jsonl.gz --test test.jsonl.gz --out report/
    rescorer convert nbest_dir --format kaldi --to jsonl out.jsonl
    rescorer wer ref_text hyp_text              Kaldi compute-wer style, sclite-compatible counts
    rescorer info LM_DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rescorer.artifact import load_artifact, set_rescoring_weights
from rescorer.atomic import text_output
from rescorer.bounded_read import read_text_bounded
from rescorer.combination import WEIGHT_NAMES, Weights, interpolated_lm
from rescorer.errors import InputError
from rescorer.eval_command import run_evaluation
from rescorer.formats.jsonl import write_jsonl
from rescorer.formats.kaldi import kaldi_key, read_cost_archive, write_cost_archive, write_kaldi_text
from rescorer.formats.reader import FORMATS, NbestSource, read_nbest, read_references
from rescorer.formats.text_files import TextFile, open_text, parse_keyed_lines
from rescorer.formats.trn import trn_id, write_trn
from rescorer.lattice.cli import add_lattice_parser, run_lattice_command
from rescorer.nbest import NbestError
from rescorer.precision import PRECISIONS
from rescorer.rerank import arrays_from_costs, best_texts, rerank, score_nbest
from rescorer.sentence_scoring import score_sentences
from rescorer.tuning import SearchSpace, check_not_worse_than_first_pass
from rescorer.wer.counts import compute_wer
from rescorer.wer.nbest_evaluation import error_table, evaluate_set

EXIT_BAD_INPUT = 2


def _cmd_info(args: argparse.Namespace) -> int:
    artifact = load_artifact(args.lm_dir)
    config = artifact.model.config
    summary = {
        "path": str(args.lm_dir), "output_kind": config.output_kind, "log_z": artifact.log_z,
        "vocab_size": len(artifact.vocab), "parameters": sum(p.numel() for p in artifact.model.parameters()),
        # what the LM's tokens are: words, or the pieces of a sentencepiece model (scores are then per
        # piece, summed per sentence; word penalties still count words)
        "unit": artifact.unit,
        "tokenizer": artifact.tokenizer.describe() if artifact.tokenizer is not None else None,
        "model": config.to_dict(),
        "provenance": {k: v for k, v in artifact.provenance.items() if k != "train_config"},
    }
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    """Kaldi's contract: same keys, same order; cost = -ln p(words </s>)."""
    artifact = load_artifact(args.lm_dir, device=args.device, precision=args.precision)
    source = TextFile(sys.stdin.buffer, "<stdin>") if args.text == "-" else open_text(args.text)
    with source:
        keys, sentences = parse_keyed_lines(source, args.text)
    scores = score_sentences(artifact, sentences, max_tokens=args.max_tokens)
    with text_output(args.out) as out:
        write_cost_archive(zip(keys, (-scores.log_probs).tolist(), strict=True), out)
    if args.oov_report:
        unit = "pieces" if artifact.tokenizer is not None else "words"
        print(f"{int(scores.num_oov.sum())} {unit} of {sum(map(len, sentences))} words scored as"
              f" {artifact.vocab.unk_symbol}", file=sys.stderr)
    return 0


def _source(args: argparse.Namespace, path: str, ref: str | None = None) -> NbestSource:
    return NbestSource(path, args.format, ref, args.score_mapping, args.symbols)


def _weights(args: argparse.Namespace) -> Weights:
    return _weights_and_note(args)[0]


def _weights_and_note(args: argparse.Namespace) -> tuple[Weights, str | None]:
    """The weights from --weights and the weight options; and, for a report's weights accepted
    although its tuning found them worse than the first pass, the note saying so."""
    values, note = Weights().to_dict(), None
    if args.weights:
        try:
            document = json.loads(read_text_bounded(args.weights))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
            raise InputError(f"{args.weights}: cannot read the weights ({str(e)[:200]})") from None
        note = check_not_worse_than_first_pass(document, args.weights, args.accept_worse_weights)
        if note is not None:
            print(f"warning: {args.weights}: {note}", file=sys.stderr)
        if isinstance(document, dict) and isinstance(document.get("weights"), dict):
            document = document["weights"]  # an eval job's report.json
        values.update(Weights.check(document, args.weights))
    values.update({k: getattr(args, k) for k in WEIGHT_NAMES if getattr(args, k) is not None})
    return Weights(**Weights.check(values, "the weights")), note


def _check_ids_for_outputs(utterances: list, kaldi: bool, trn: bool) -> None:
    """Before any work or any output: every utterance id can be written in the formats asked
    for (an output written half, or after an hour of scoring, helps nobody)."""
    for utt in utterances:
        if kaldi:
            kaldi_key(utt.utt_id)
        if trn:
            trn_id(utt.utt_id)


def _cmd_rescore(args: argparse.Namespace) -> int:
    artifact = load_artifact(args.lm_dir, device=args.device, precision=args.precision)
    utterances = read_nbest(_source(args, args.input, args.ref))
    _check_ids_for_outputs(utterances, kaldi=bool(args.out_text or args.out_lm_costs), trn=bool(args.out_trn))
    weights = _weights(args)
    if args.nnlm_costs:  # our LM's costs computed before (e.g. by parallel Kaldi jobs)
        arrays = arrays_from_costs(artifact, utterances, read_cost_archive(args.nnlm_costs), args.nnlm_costs)
    else:
        arrays = score_nbest(artifact, utterances, args.max_tokens)
    reranked = rerank(utterances, arrays, weights)
    if args.out_jsonl:
        with text_output(args.out_jsonl) as out:
            write_jsonl(reranked, out)
    if args.out_text:
        with text_output(args.out_text) as out:
            write_kaldi_text(best_texts(reranked), out)
    if args.out_trn:
        with text_output(args.out_trn) as out:
            write_trn(best_texts(reranked), out)
    if args.out_lm_costs:  # keyed like the input: utt-1 .. utt-N in first-pass order
        mixed = interpolated_lm(arrays, weights)
        keys = [f"{u.utt_id}-{n}" for u in utterances for n in range(1, len(u.hyps) + 1)]
        with text_output(args.out_lm_costs) as out:
            write_cost_archive(zip(keys, (-mixed).tolist(), strict=True), out)
    if all(u.ref is not None for u in utterances):
        evaluation = evaluate_set(utterances, arrays, error_table(utterances), weights)
        print(f"WER first pass {100 * evaluation.first_pass.wer:.2f} % -> rescored {100 * evaluation.rescored.wer:.2f} %"
              f" (oracle {100 * evaluation.oracle.wer:.2f} %)", file=sys.stderr)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    space = SearchSpace.parse(args.fix, args.range)  # before anything is read: a typo costs a second
    artifact = load_artifact(args.lm_dir, device=args.device, precision=args.precision)
    if args.test_ref and len(args.test_ref) != len(args.test):
        raise NbestError(f"{len(args.test_ref)} --test-ref for {len(args.test)} --test sets (give one per set, or none)")
    tests = [_source(args, t, args.test_ref[i] if args.test_ref else None) for i, t in enumerate(args.test)]
    run_evaluation(artifact, _source(args, args.dev, args.dev_ref), tests, Path(args.out), space=space,
                   max_tokens=args.max_tokens, progress=not args.no_progress)
    print((Path(args.out) / "report.md").read_text(encoding="utf-8"))
    print(f"error-analysis page: {Path(args.out) / 'report.html'}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    utterances = read_nbest(_source(args, args.input, args.ref))
    _check_ids_for_outputs(utterances, kaldi=args.to == "kaldi", trn=args.to == "trn")
    if args.to == "jsonl":
        with text_output(args.output) as out:
            write_jsonl(utterances, out)
    elif args.to == "trn":  # the first (first-pass 1-best) hypothesis of each list
        with text_output(args.output) as out:
            write_trn([(u.utt_id, u.hyps[0].text) for u in utterances], out)
    else:  # kaldi: a directory as steps/rnnlmrescore.sh lays out nbest-to-linear's outputs
        root = Path(args.output)
        keyed = [(f"{u.utt_id}-{n}", h) for u in utterances for n, h in enumerate(u.hyps, start=1)]
        writers = {  # every file this layout may hold; None: not for these lists
            "words_text": lambda out: write_kaldi_text([(k, h.text) for k, h in keyed], out),
            "acwt": lambda out: write_cost_archive([(k, -h.am_score) for k, h in keyed], out),
            "lmwt.withlm": (lambda out: write_cost_archive([(k, -h.lm_score) for k, h in keyed], out))
            if all(h.lm_score is not None for _, h in keyed) else None,
            "text": (lambda out: write_kaldi_text([(u.utt_id, u.ref) for u in utterances], out))
            if all(u.ref is not None for u in utterances) else None,
        }
        for name, write in writers.items():
            if write is None:  # a file of an earlier conversion into this directory would be read back with these lists
                (root / name).unlink(missing_ok=True)
                continue
            with text_output(str(root / name)) as out:
                write(out)
    return 0


def _cmd_set_weights(args: argparse.Namespace) -> int:
    """Store an eval job's tuned weights in the artifact, as the service's defaults for it."""
    weights, note = _weights_and_note(args)
    source = args.weights or "command line"
    set_rescoring_weights(args.lm_dir, weights.to_dict(), source if note is None else f"{source} ({note})")
    print(json.dumps(weights.to_dict()))
    return 0


def _cmd_wer(args: argparse.Namespace) -> int:
    """Kaldi compute-wer's report line, from sclite-compatible counts."""
    refs, hyps = read_references(args.ref), read_references(args.hyp)
    if set(refs) != set(hyps):
        only = sorted(set(refs) ^ set(hyps))[0]
        raise NbestError(f"utterance {only!r} is in only one of {args.ref} and {args.hyp} (both must hold the same ids)")
    keys = sorted(refs)
    result = compute_wer([refs[k] for k in keys], [hyps[k] for k in keys])
    print(f"%WER {100 * result.wer:.2f} [ {result.errors} / {result.ref_words}, {result.insertions} ins,"
          f" {result.deletions} del, {result.substitutions} sub ]")
    print(f"%SER {100 * result.sentence_errors / result.sentences:.2f} [ {result.sentence_errors} / {result.sentences} ]")
    return 0


def _add_weight_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", help="JSON with the weights: an object of them, or an eval job's report.json"
                                     " (default: none; the defaults below)")
    p.add_argument("--accept-worse-weights", action="store_true",
                   help="use a report's weights even where its tuning found them worse on dev than the first pass"
                        " (refused by default)")
    for name, (default, help) in Weights.describe().items():
        p.add_argument("--" + name.replace("_", "-"), type=float, help=f"{help} (default {default:g}, or from --weights)")


def _add_input_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, help="input format (inferred from the path when omitted)")
    p.add_argument("--score-mapping", help="named scores to am/lm, e.g. 'am=0.6*decoder+0.4*ctc,lm=lm'")
    p.add_argument("--symbols", help="words.txt for inputs with integer word ids")


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-tokens", type=int, default=4096, help="padded tokens per scoring batch (default: 4096)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--precision", default="fp32", choices=["auto", *sorted(PRECISIONS)],
                   help="arithmetic of the LSTM and storage of the output rows: fp32, bf16 (CPUs with native bf16,"
                        " CUDA), fp16 (CUDA), or auto (bf16 where the device has it in hardware); see docs/RESULTS.md,"
                        " 'Reduced precision' (default: fp32)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rescorer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="verify an artifact and print its config and provenance")
    p.add_argument("lm_dir", help="an artifact directory (config.json, words.txt, model.safetensors)")

    p = sub.add_parser("score", help="Kaldi sentence scoring: 'key word ...' lines in, 'key cost' lines out")
    p.add_argument("lm_dir", help="an artifact directory (config.json, words.txt, model.safetensors)")
    p.add_argument("text", help="'key word word ...' per line ('-' for stdin)")
    p.add_argument("out", help="'key cost' per line, cost = -ln p ('-' for stdout)")
    p.add_argument("--oov-report", action="store_true", help="print the number of <unk>-scored words to stderr")
    _add_model_options(p)

    p = sub.add_parser("rescore", help="rescore N-best lists with fixed weights")
    p.add_argument("lm_dir", help="an artifact directory (config.json, words.txt, model.safetensors)")
    p.add_argument("input", help="N-best lists: a JSONL or HyPoradise file, an ESPnet decode directory, a Kaldi directory or lattice archive")
    p.add_argument("--ref", help="references (Kaldi text or .trn); WER is printed when every utterance has one")
    _add_weight_options(p)
    p.add_argument("--out-jsonl", help="re-ranked lists with nnlm_score, total and rank")
    p.add_argument("--out-text", help="1-best as a Kaldi text file")
    p.add_argument("--out-trn", help="1-best as an sclite trn file")
    p.add_argument("--out-lm-costs", help="new LM-cost archive (-(interpolated LM score)), keyed utt-1..utt-N")
    p.add_argument("--nnlm-costs", help="our LM's costs computed before (`rescorer score` output, keyed utt-1..utt-N)"
                                        " instead of scoring again (default: score with LM_DIR)")
    _add_input_options(p)
    _add_model_options(p)

    p = sub.add_parser("eval", help="tune weights on dev, report WER on test sets (Markdown, JSON, PNG)")
    p.add_argument("lm_dir", help="an artifact directory (config.json, words.txt, model.safetensors)")
    p.add_argument("--dev", required=True, help="N-best lists to tune the weights on (any input format)")
    p.add_argument("--dev-ref", help="references for --dev, where the lists carry none (Kaldi text or .trn)")
    p.add_argument("--test", action="append", required=True, help="repeat for several test sets")
    p.add_argument("--test-ref", action="append", help="references for each --test, in the same order")
    p.add_argument("--out", required=True, help="directory for report.md, report.json, wer_vs_weights.png")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--fix", action="append", metavar="NAME=VALUE",
                   help="hold a weight at a value while tuning, e.g. --fix interp_weight=0 (repeatable;"
                        " am_weight is fixed at 1 and oov_penalty at 0 unless given a range)")
    p.add_argument("--range", action="append", metavar="NAME=LOW:HIGH",
                   help="search a weight within bounds, e.g. --range lm_weight=5:20 (repeatable; defaults:"
                        " lm_weight 0:1000, interp_weight 0:1, word_penalty +-1000 acoustic units per word)")
    _add_input_options(p)
    _add_model_options(p)

    p = sub.add_parser("set-weights", help="store tuned weights in an artifact (the service's defaults for it)")
    p.add_argument("lm_dir", help="an artifact directory (config.json, words.txt, model.safetensors)")
    _add_weight_options(p)

    p = sub.add_parser("wer", help="WER of a hypothesis text against a reference text (Kaldi text or .trn)")
    p.add_argument("ref", help="reference text: Kaldi text (key words) or sclite .trn")
    p.add_argument("hyp", help="hypothesis text in the same form, the same keys")

    p = sub.add_parser("convert", help="convert N-best lists between formats")
    p.add_argument("input", help="N-best lists in any input format")
    p.add_argument("--to", choices=("jsonl", "kaldi", "trn"), required=True, help="output format")
    p.add_argument("output", help="file (jsonl, trn) or directory (kaldi)")
    p.add_argument("--ref", help="references to attach (Kaldi text or .trn)")
    _add_input_options(p)

    p = sub.add_parser("export-onnx", help="write the artifact as an ONNX graph (x, x_lens -> nll) for onnxruntime"
                                           " and sherpa-onnx, with tokens.txt beside it")
    p.add_argument("lm_dir", help="an artifact directory (config.json, words.txt, model.safetensors)")
    p.add_argument("out", help="the graph to write (a name ending in .onnx); tokens.txt goes beside it")
    p.add_argument("--streaming", action="store_true",
                   help="the state-passing form instead: x, h0, c0 -> log_probs, next_h0, next_c0")

    add_lattice_parser(sub)
    return parser


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from rescorer.onnx_export import export_onnx

    artifact = load_artifact(args.lm_dir)
    out = export_onnx(artifact, args.out, streaming=args.streaming)
    print(f"{out}: {'streaming ' if args.streaming else ''}graph of {args.lm_dir} ({artifact.unit}s,"
          f" {len(artifact.vocab)} tokens, {artifact.model.config.output_kind}); tokens in"
          f" {out.parent / 'tokens.txt'}")
    return 0


COMMANDS = {"info": _cmd_info, "score": _cmd_score, "rescore": _cmd_rescore, "eval": _cmd_eval,
            "convert": _cmd_convert, "wer": _cmd_wer, "set-weights": _cmd_set_weights, "lattice": run_lattice_command,
            "export-onnx": _cmd_export_onnx}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, value in vars(args).items():  # a path, format or weight given as "": a variable left unset,
        for item in value if isinstance(value, list) else [value]:  # never the working directory
            if isinstance(item, str) and not item.strip():
                parser.error(f"{name.replace('_', '-')}: an empty value; expected a path, name or number")
    try:
        return COMMANDS[args.command](args)
    except InputError as e:  # bad input only: anything else is a bug and shows as one
        print(f"rescorer: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
