"""Word LMs against subword LMs of the same shape on the same text: LibriSpeech 30-best and ATIS.

    python experiments/subword_lms.py --data-dir ../shared/data --out runs/subword

LibriSpeech (`librispeech-espnet2-hubert-30best`): an NCE LSTM (1 x --hidden, embedding =
hidden) trained on WikiText-2 train brought to the lists' conventions
(experiments/librispeech_wikitext.py's text), once over words (every word of the text) and once
over --pieces BPE pieces learned on the same text (`--subword-units`), --epochs each with the
paper's schedule, log_z re-centered on WikiText-2 valid; weights tuned on dev_clean for
test_clean and on dev_other for test_other (`rescorer.eval_command`, every weight free).
ATIS (HyPoradise): the same two kinds of LM, 1 x --atis-hidden, trained on the ATIS training
references (experiments/atis_adaptation.py's split: 90 % of `train_atis`, the other 10 % the dev
text and the dev lists), --atis-pieces pieces; tuned on the dev lists, tested on the 809
`test_atis` lists.
Per LM: parameters, perplexity per word on the held-out text (WikiText-2 valid; the ATIS dev
references): the same log-probability over the text's words plus one `</s>` per sentence for
both kinds, comparable where both spell the same text (a word LM scores each word it lacks as
the one `<unk>` class, which flatters its perplexity by that share: reported beside it); per
piece too for the subword LMs; mean |ln Z| per token
(self-normalization); the share of the test lists' hypothesis words scored as `<unk>`; test WER
with the 95 % paired-bootstrap interval against the first pass, and subword against word
(per-utterance errors of both). Every run resumes; results to OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.adaptation_runs import run, train_seconds, write_json
from experiments.atis_adaptation import AtisTestLists, per_utterance_errors, write_atis_split
from experiments.librispeech_wikitext import MAPPING
from experiments.librispeech_wikitext import prepare as prepare_wikitext
from rescorer.artifact import load_artifact, parameter_count
from rescorer.eval_command import run_evaluation
from rescorer.formats.reader import NbestSource, read_nbest
from rescorer.sentence_scoring import encode_sentences
from rescorer.wer.bootstrap import paired_bootstrap
from rescorer.wer.nbest_evaluation import error_table
from training.config import TrainConfig
from training.corpus import iter_sentences
from training.perplexity import evaluate, recenter_log_z


def held_out(artifact_path: Path, text: Path, recenter_into: Path | None = None) -> dict:
    """Perplexity per word (and per piece), mean |ln Z|; optionally a copy re-centered on `text`."""
    artifact = load_artifact(artifact_path)
    sentences = list(iter_sentences(text))
    ids, unknown = encode_sentences(artifact, sentences)
    words = sum(len(s) for s in sentences)
    stats = evaluate(artifact.model, ids, artifact.vocab.bos_id, artifact.vocab.eos_id, num_words=words)
    if recenter_into is not None and not (recenter_into / "config.json").exists():
        shutil.rmtree(recenter_into, ignore_errors=True)
        shutil.copytree(artifact_path, recenter_into)
        recenter_log_z(recenter_into, stats, text)
    return {"per_word_ppl": stats.per_word_ppl, "per_token_ppl": stats.normalized_ppl,
            "tokens": stats.num_tokens, "words_and_ends": words + len(sentences),
            "mean_abs_log_z": stats.log_z_abs_mean, "held_out_unk_share": float(unknown.sum()) / words, "parameters": parameter_count(artifact.model.config),
            "unit": artifact.unit, "train_seconds": train_seconds(artifact_path)}


def unk_share(artifact_path: Path, source: NbestSource) -> float:
    """The share of the lists' hypothesis words scored as <unk> (a subword LM: words holding an <unk> piece)."""
    artifact = load_artifact(artifact_path)
    sentences = [h.words for u in read_nbest(source) for h in u.hyps]
    words = sum(len(s) for s in sentences)
    if artifact.tokenizer is None:
        return float(encode_sentences(artifact, sentences)[1].sum()) / words
    unknown = sum(1 for s in sentences for w in s if artifact.vocab.unk_symbol in artifact.tokens([w]))
    return unknown / words


def test_errors(artifact_path: Path, dev: NbestSource, test: NbestSource, out: Path) -> tuple[dict, np.ndarray, dict]:
    document = run_evaluation(load_artifact(artifact_path), dev, [test], out, progress=False)
    report = document["sets"][0]
    utterances = read_nbest(test)
    table = error_table(utterances)
    offsets = np.cumsum([0] + [len(u.hyps) for u in utterances])
    first = table.hyp_errors[offsets[:-1]]
    errors = per_utterance_errors(report, first, [u.utt_id for u in utterances])
    return report, errors, {"first": first, "ref_words": table.ref_words}


def compare(rows: dict, errors: dict, refs: dict) -> dict:
    words = refs["ref_words"]
    for name, e in errors.items():
        rows[name]["test_wer"] = float(e.sum() / words.sum())
        rows[name]["vs_first_pass"] = paired_bootstrap(refs["first"], e, words).to_dict()
    return {"first_pass_wer": float(refs["first"].sum() / words.sum()),
            "subword_vs_word": paired_bootstrap(errors["word"], errors["subword"], words).to_dict()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("runs/subword"))
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--pieces", type=int, default=5000)
    parser.add_argument("--atis-hidden", type=int, default=128)
    parser.add_argument("--atis-epochs", type=int, default=10)
    parser.add_argument("--atis-pieces", type=int, default=1000)
    parser.add_argument("--only", choices=["librispeech", "atis"], help="one of the two halves")
    args = parser.parse_args()
    path = args.out / "results.json"
    results = {"settings": {k: str(v) for k, v in vars(args).items()}}

    def save(half: str) -> None:  # the other half as the file holds it now (another process may write it)
        write_json(path, {**(json.loads(path.read_text()) if path.exists() else {}), "settings": results["settings"],
                          half: results[half]})

    if args.only in (None, "librispeech"):
        text = prepare_wikitext(args.data_dir, args.out)
        nbest = args.data_dir / "librispeech-espnet2-hubert-30best" / "nbest"

        def source(split: str) -> NbestSource:
            return NbestSource(str(nbest / f"{split}.jsonl.gz"), "jsonl", score_mapping=MAPPING)

        rows, artifacts = {}, {}
        for kind, extra in (("word", {}), ("subword", {"subword_units": args.pieces})):
            config = TrainConfig(train_path=str(text["train"]), dev_path=str(text["valid"]),
                                 out_dir=str(args.out / f"librispeech-{kind}"), loss="nce", embedding_dim=args.hidden,
                                 hidden_dim=args.hidden, num_layers=1, batch_size=16, max_epochs=args.epochs, **extra)
            trained = run(config)
            artifacts[kind] = args.out / f"librispeech-{kind}-recentered"
            rows[kind] = held_out(trained, text["valid"], artifacts[kind])
            rows[kind]["test_unk_share"] = {c: unk_share(artifacts[kind], source(f"test_{c}")) for c in ("clean", "other")}
        results["librispeech"] = {"lms": rows, "conditions": {}}
        for condition in ("clean", "other"):
            errors, refs = {}, None
            for kind in rows:
                _, errors[kind], refs = test_errors(artifacts[kind], source(f"dev_{condition}"),
                                                    source(f"test_{condition}"), args.out / f"report-{kind}-{condition}")
            per_condition = {kind: {} for kind in rows}
            summary = compare(per_condition, errors, refs)
            results["librispeech"]["conditions"][condition] = {**summary, "lms": per_condition}
            print(f"LibriSpeech test_{condition}: first pass {summary['first_pass_wer']:.4f}, word"
                  f" {per_condition['word']['test_wer']:.4f}, subword {per_condition['subword']['test_wer']:.4f}",
                  flush=True)
        save("librispeech")

    if args.only in (None, "atis"):
        split = {name: args.out / "atis" / f"{name}.txt" for name in ("id_train", "id_dev")}
        split["dev_lists"] = args.out / "atis" / "dev_atis.json.gz"
        if not split["dev_lists"].exists():
            write_atis_split(args.data_dir, split, seed=1)
        lists = AtisTestLists.read(args.data_dir, split["dev_lists"])
        rows, errors = {}, {}
        for kind, extra in (("word", {}), ("subword", {"subword_units": args.atis_pieces})):
            config = TrainConfig(train_path=str(split["id_train"]), dev_path=str(split["id_dev"]),
                                 out_dir=str(args.out / f"atis-{kind}"), loss="nce", embedding_dim=args.atis_hidden,
                                 hidden_dim=args.atis_hidden, num_layers=1, batch_size=16,
                                 max_epochs=args.atis_epochs, **extra)
            trained = run(config)
            rows[kind] = held_out(trained, split["id_dev"])
            rows[kind]["test_unk_share"] = unk_share(trained, lists.test_source)
            _, _, errors[kind] = lists.rescore(trained, args.out / f"report-atis-{kind}")
        refs = {"first": lists.first_errors, "ref_words": lists.table.ref_words}
        summary = compare(rows, errors, refs)
        results["atis"] = {**summary, "lms": rows}
        print(f"ATIS test: first pass {summary['first_pass_wer']:.4f}, word {rows['word']['test_wer']:.4f},"
              f" subword {rows['subword']['test_wer']:.4f}", flush=True)
        save("atis")


if __name__ == "__main__":
    main()
