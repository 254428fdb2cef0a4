"""The WER evaluation job: tune the weights on a dev N-best set, freeze them, report the test sets.

    rescorer eval LM_DIR --dev dev.jsonl.gz --test test_a.jsonl.gz --test test_b.jsonl.gz --out report/
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rescorer.artifact import Artifact
from rescorer.atomic import check_directory_can_be_made, make_directory
from rescorer.formats.reader import NbestSource, read_nbest
from rescorer.html_report import EvaluatedSet, write_html_report
from rescorer.nbest import NbestError
from rescorer.report import plot_tuning, write_reports
from rescorer.rerank import count_oov, score_nbest
from rescorer.tuning import SearchSpace, WorseThanFirstPassWarning, tune_weights
from rescorer.wer.nbest_evaluation import error_table, evaluate_set


def _name(source: NbestSource) -> str:
    name = Path(source.path).name
    for suffix in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    return name


def run_evaluation(artifact: Artifact, dev: NbestSource, tests: list[NbestSource], out_dir: Path,
                   space: SearchSpace | None = None, max_tokens: int = 4096, progress: bool = True) -> dict[str, Any]:
    started = time.perf_counter()
    check_directory_can_be_made(out_dir)  # before the scoring: found in a second, not after an hour
    lists = []  # every list read and checked (references included) before any is scored
    for role, source in [("dev", dev)] + [("test", t) for t in tests]:
        utterances = read_nbest(source)
        try:
            table = error_table(utterances)  # lazy: the alignments run when the WER needs them
        except NbestError as e:  # the list's rule broken (a reference missing): name the list
            raise NbestError(f"{source.path}: {e}") from None
        if int(table.ref_words.sum()) == 0:
            raise NbestError(f"{source.path}: the references hold no words, so its WER is undefined"
                             f" ({len(utterances)} utterances; expected at least one reference word)")
        lists.append((role, source, utterances, table))
    sets = []
    for role, source, utterances, table in lists:
        t0 = time.perf_counter()
        arrays = score_nbest(artifact, utterances, max_tokens, progress=progress)
        seconds = time.perf_counter() - t0
        sets.append((role, source, utterances, arrays, table, seconds))
        if progress:
            tqdm.write(f"scored {_name(source)}: {len(utterances)} utterances, {len(arrays.nnlm)} hypotheses"
                       f" in {seconds:.1f} s")

    _, dev_source, dev_utts, dev_arrays, dev_table, _ = sets[0]
    with tqdm(desc="tuning on dev", disable=not progress, unit="line search") as bar, warnings.catch_warnings():
        warnings.simplefilter("ignore", WorseThanFirstPassWarning)  # said below, among the tuning's warnings
        tuning = tune_weights(dev_arrays, dev_table.hyp_errors, dev_table.ref_words, space, bar)
    for warning in tuning.warnings():
        print(f"warning: {warning}", file=sys.stderr)

    plot_path = out_dir / "wer_vs_weights.png"
    make_directory(out_dir)
    plot_tuning(tuning, plot_path, f"dev WER, {_name(dev_source)}")
    reports, evaluated = [], []
    for role, source, utterances, arrays, table, seconds in sets:
        evaluation = evaluate_set(utterances, arrays, table, tuning.weights)
        oov, words = count_oov(arrays)
        evaluated.append(EvaluatedSet(_name(source), role, utterances, arrays, table, evaluation, oov, words))
        reports.append({"name": _name(source), "role": role, "source": asdict(source),
                        "evaluation": evaluation.to_dict(), "oov_words": oov, "words": words,
                        "scoring_seconds": seconds, "hypotheses": len(arrays.nnlm)})
    document = {
        "model": str(artifact.path), "output_kind": artifact.model.config.output_kind, "log_z": artifact.log_z,
        "unit": artifact.unit,
        "tokenizer": artifact.tokenizer.describe() if artifact.tokenizer is not None else None,
        "weights": tuning.weights.to_dict(),
        "tuning": tuning.to_dict(),
        "dev": {"name": _name(dev_source)},
        "sets": [r for r in reports if r["role"] == "test"] or reports,
        "dev_set": reports[0],
        "plot": plot_path.name, "seconds": time.perf_counter() - started,
    }
    write_reports(document, out_dir)
    # the error-analysis page: the test sets, then the dev set the weights were tuned on
    write_html_report(document, [s for s in evaluated if s.role == "test"] + evaluated[:1], out_dir)
    return document
