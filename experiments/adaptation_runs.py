"""What the adaptation experiments share: resumable runs, cached evaluations, the gamma plot.

Every model is a run directory: a finished one (its artifact exists) is reused, a stopped one
continues from its last checkpoint, so rerunning an experiment after a stopped session picks
up where it was. Evaluations are cached as JSON beside the run.
"""

from __future__ import annotations

import gzip
import json
import sys
import time
from pathlib import Path
from typing import Any

from rescorer.artifact import load_artifact
from rescorer.atomic import write_text_atomic
from training.config import TrainConfig
from training.corpus import iter_sentences
from training.perplexity import evaluate
from training.train import train


def ptb_train_head(data_dir: Path, out: Path, sentences: int) -> Path:
    """The first `sentences` sentences of PTB train, written once to OUT/ptb-train-head.txt."""
    path = out / "ptb-train-head.txt"
    if not path.exists():
        with gzip.open(data_dir / "ptb" / "ptb.train.txt.gz", "rt", encoding="utf-8") as f:
            write_text_atomic(path, "".join(line for _, line in zip(range(sentences), f, strict=False)))
    return path


def run(config: TrainConfig) -> Path:
    """Train (or resume, or reuse) the run in config.out_dir; returns its artifact path."""
    out = Path(config.out_dir)
    artifact = out / "artifact"
    if not (artifact / "config.json").exists():
        started = time.perf_counter()
        print(f"training {out} ...", flush=True)
        train(config, resume=(out / "checkpoint.pt").exists(), progress=sys.stderr.isatty())
        print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)
    return artifact


def evaluation(artifact: Path, text: Path, name: str) -> dict[str, Any]:
    """Normalized / self-normalized perplexity and log Z(h) statistics of `artifact` on `text`."""
    cache = artifact.parent / f"eval-{name}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    lm = load_artifact(artifact)
    vocab = lm.vocab
    sentences = [vocab.encode(words) for words in iter_sentences(text)]
    result = evaluate(lm.model, sentences, vocab.bos_id, vocab.eos_id).to_dict()
    write_text_atomic(cache, json.dumps(result, indent=2) + "\n")
    return result


def train_seconds(artifact: Path) -> float:
    """Seconds spent in training epochs (dev evaluations excluded), from the provenance."""
    return float(load_artifact(artifact).provenance["train_seconds"])


def plot_gamma(rows: list[dict[str, Any]], path: Path, in_domain: str, general: str) -> None:
    """In-domain dev and general test perplexity against gamma: what each setting forgets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gammas = [r["gamma"] for r in rows]
    fig, left = plt.subplots(figsize=(6, 4))
    left.plot(gammas, [r["id_dev_ppl"] for r in rows], "o-", color="tab:blue", label=f"{in_domain} dev")
    left.set_xlabel("gamma (1 = plain NCE fine-tuning)")
    left.set_ylabel(f"{in_domain} dev perplexity", color="tab:blue")
    right = left.twinx()
    right.plot(gammas, [r["ood_test_ppl"] for r in rows], "s--", color="tab:red", label=f"{general} test")
    right.set_ylabel(f"{general} test perplexity", color="tab:red")
    fig.suptitle("NCE+KLD adaptation: in-domain gain against forgetting")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_json(path: Path, document: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(document, indent=2) + "\n")
