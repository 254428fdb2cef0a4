"""Sentence scoring: onnxruntime on the exported graph against the PyTorch scorer, side by side.

    python bench/onnx_throughput.py --data-dir ../shared/data --out docs/bench/onnx_throughput.json

One process, the same sentences (the first --sentences of PTB valid, read as words), random
weights (speed does not depend on them), PTB's 10k vocabulary. Models: a small self-normalized
student (1 x 48, embedding = hidden) and a 2 x 256 LSTM, self-normalized and softmax. For each,
at one and at two threads (`torch.set_num_threads`; onnxruntime's intra-op threads): the
library (`rescorer.sentence_scoring.score_sentences`, its own length-sorted token-budget
batches) and onnxruntime running `rescorer export-onnx`'s graph (x, x_lens -> nll) on batches
of the same sentences sorted by length, --batch rows at a time. Reported: sentences per second
of each, best of --repeats, interleaved, their ratio, and the largest relative difference of
the two nll.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from rescorer.artifact import Artifact
from rescorer.model import LstmLanguageModel, ModelConfig
from rescorer.onnx_export import export_onnx
from rescorer.sentence_scoring import score_sentences
from rescorer.vocab import build_vocabulary
from training.corpus import count_words

MODELS = {"student 1x48, self-normalized": (1, 48, "self_normalized"),
          "2x256, self-normalized": (2, 256, "self_normalized"), "2x256, softmax": (2, 256, "softmax")}


def artifact_for(vocab, layers: int, hidden: int, kind: str) -> Artifact:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=len(vocab), embedding_dim=hidden, hidden_dim=hidden, num_layers=layers,
                         dropout=0.0, output_kind=kind)
    return Artifact(LstmLanguageModel(config, log_z=9.0 if kind == "self_normalized" else None).eval(), vocab)


def onnx_batches(artifact: Artifact, sentences, rows: int):
    ids = [artifact.token_ids(s) for s in sentences]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    batches = []
    for start in range(0, len(order), rows):
        chunk = order[start:start + rows]
        x = np.zeros((len(chunk), max(1, max(len(ids[i]) for i in chunk))), dtype=np.int64)
        for r, i in enumerate(chunk):
            x[r, :len(ids[i])] = ids[i]
        batches.append((chunk, x, np.array([len(ids[i]) for i in chunk], dtype=np.int64)))
    return batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("docs/bench/onnx_throughput.json"))
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    vocab = build_vocabulary(count_words([args.data_dir / "ptb" / "ptb.train.txt.gz"]))
    with gzip.open(args.data_dir / "ptb" / "ptb.valid.txt.gz", "rt") as f:
        sentences = [line.split() for _, line in zip(range(args.sentences), f, strict=False)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (layers, hidden, kind) in MODELS.items():
            artifact = artifact_for(vocab, layers, hidden, kind)
            graph = export_onnx(artifact, Path(tmp) / f"{layers}x{hidden}-{kind}.onnx")
            batches = onnx_batches(artifact, sentences, args.batch)
            for threads in (1, 2):
                torch.set_num_threads(threads)
                options = ort.SessionOptions()
                options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
                session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
                best = {"pytorch": float("inf"), "onnxruntime": float("inf")}
                nll_ort = np.zeros(len(sentences))
                for _ in range(args.repeats):
                    started = time.perf_counter()
                    nll_torch = -score_sentences(artifact, sentences).log_probs
                    best["pytorch"] = min(best["pytorch"], time.perf_counter() - started)
                    started = time.perf_counter()
                    for chunk, x, lens in batches:
                        nll_ort[chunk] = session.run(["nll"], {"x": x, "x_lens": lens})[0]
                    best["onnxruntime"] = min(best["onnxruntime"], time.perf_counter() - started)
                row = {"model": name, "threads": threads,
                       "pytorch_sentences_per_second": len(sentences) / best["pytorch"],
                       "onnxruntime_sentences_per_second": len(sentences) / best["onnxruntime"],
                       "onnxruntime_vs_pytorch": best["pytorch"] / best["onnxruntime"],
                       "max_relative_nll_difference": float(np.max(np.abs(nll_ort - nll_torch) / np.abs(nll_torch)))}
                rows.append(row)
                print(f"{name:32s} {threads} thread(s): PyTorch {row['pytorch_sentences_per_second']:8.0f}/s,"
                      f" onnxruntime {row['onnxruntime_sentences_per_second']:8.0f}/s"
                      f" ({row['onnxruntime_vs_pytorch']:.2f}x), nll differ by <= {row['max_relative_nll_difference']:.1e}",
                      flush=True)
    document = {"command": "python bench/onnx_throughput.py", "settings": {k: str(v) for k, v in vars(args).items()},
                "machine": {"processor": platform.processor(), "torch": torch.__version__,
                            "onnxruntime": ort.__version__},
                "vocab_size": len(vocab), "sentences": len(sentences), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
