"""LibriSpeech 30-best rescoring with an NCE LSTM trained on WikiText-2.

    python experiments/librispeech_wikitext.py --data-dir ../shared/data --out runs/librispeech

1. WikiText-2 train/valid normalized to the N-best lists' conventions
   (training/text_normalization.py: upper case, apostrophes kept, no other punctuation);
2. an NCE LSTM trained on it (resumes from its last checkpoint when rerun);
3. its log_z re-centered on the normalized WikiText-2 valid set;
4. weights tuned on dev_clean and applied to test_clean, tuned on dev_other and applied to
   test_other (rescorer.eval_command), each report in OUT/report-{clean,other}/: interpolated
   with the first-pass LM (every weight tuned), and, in OUT/report-{clean,other}-replace/, our LM
   instead of the first-pass LM (interp_weight fixed at 1), which shows what it is worth alone.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rescorer.artifact import load_artifact
from rescorer.atomic import write_text_atomic
from rescorer.eval_command import run_evaluation
from rescorer.formats.reader import NbestSource
from rescorer.tuning import SearchSpace
from training.config import TrainConfig
from training.corpus import iter_sentences
from training.perplexity import evaluate, recenter_log_z
from training.text_normalization import wikitext_to_librispeech
from training.train import train

MAPPING = "am=0.6*decoder+0.4*ctc,lm=lm"


def prepare(data_dir: Path, out: Path) -> dict[str, Path]:
    paths = {}
    for name in ("train", "valid"):
        path = out / "wikitext-ls" / f"{name}.txt"
        if not path.exists():
            with gzip.open(data_dir / "wikitext-2" / f"{name}.txt.gz", "rt", encoding="utf-8") as f:
                write_text_atomic(path, "\n".join(wikitext_to_librispeech(f)) + "\n")
        paths[name] = path
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("runs/librispeech"))
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    corpus = prepare(args.data_dir, args.out)

    run = args.out / "lm"
    config = TrainConfig(train_path=str(corpus["train"]), dev_path=str(corpus["valid"]), out_dir=str(run),
                         loss="nce", embedding_dim=args.hidden, hidden_dim=args.hidden, num_layers=2,
                         batch_size=args.batch_size, max_epochs=args.epochs)
    artifact_path = run / "artifact"
    if not (artifact_path / "config.json").exists():
        train(config, resume=(run / "checkpoint.pt").exists(), progress=sys.stderr.isatty())

    recentered = args.out / "lm-recentered"
    if not (recentered / "config.json").exists():
        artifact = load_artifact(artifact_path)
        valid = [artifact.vocab.encode(w) for w in iter_sentences(corpus["valid"])]
        stats = evaluate(artifact.model, valid, artifact.vocab.bos_id, artifact.vocab.eos_id)
        print(f"valid: normalized ppl {stats.normalized_ppl:.1f}, mean log Z {stats.log_z_mean:+.3f}", flush=True)
        shutil.rmtree(recentered, ignore_errors=True)
        shutil.copytree(artifact_path, recentered)
        recenter_log_z(recentered, stats, corpus["valid"])

    artifact = load_artifact(recentered)
    nbest = args.data_dir / "librispeech-espnet2-hubert-30best" / "nbest"
    for condition in ("clean", "other"):
        def source(split: str) -> NbestSource:
            return NbestSource(str(nbest / f"{split}.jsonl.gz"), "jsonl", score_mapping=MAPPING)

        for suffix, space in (("", SearchSpace()), ("-replace", SearchSpace(fixed={"interp_weight": 1.0}))):
            out = args.out / f"report-{condition}{suffix}"
            run_evaluation(artifact, source(f"dev_{condition}"), [source(f"test_{condition}")], out, space=space,
                           progress=sys.stderr.isatty())
            print((out / "report.md").read_text(), flush=True)


if __name__ == "__main__":
    main()
