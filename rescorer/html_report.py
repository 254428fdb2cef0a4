"""The error-analysis page of an evaluation: `report.html`, one self-contained file.

What it shows, per set: first pass, acoustic only, rescored and oracle WER with the bootstrap
interval of the change, the share of the first-pass-to-oracle gap closed, errors by type before
and after, the LM's OOV rate; the tuned weights, how they were found and what the tuner saw on
dev, the dev WER along each weight (the PNG embedded); and every utterance whose 1-best
changed: the reference, the first-pass and the rescored 1-best, each aligned to the reference
with sclite's costs (substitutions, deletions, insertions marked), with the weighted score
components that add up to each total, the change in errors, the id and the position in the
input. Filtering, sorting and pagination (50 utterances a page) run in an inline script over
rows rendered here, so the page reads offline and the rows are in the HTML itself.

Rendered with a Jinja2 template (`rescorer/templates/report.html.j2`), autoescaped: hypothesis
text is data, never markup.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from rescorer.atomic import write_text_atomic
from rescorer.combination import NbestArrays, Weights
from rescorer.nbest import Utterance
from rescorer.tuning import BASELINE_NAMES
from rescorer.wer.alignment import sclite_alignment
from rescorer.wer.nbest_evaluation import ErrorTable, SetEvaluation
from rescorer.words import split_words


@dataclass
class EvaluatedSet:
    """What the page needs of one evaluated set."""

    name: str
    role: str
    utterances: Sequence[Utterance]
    arrays: NbestArrays
    table: ErrorTable
    evaluation: SetEvaluation
    oov_words: int
    words: int


def weighted_parts(arrays: NbestArrays, weights: Weights, i: int) -> list[float]:
    """The parts of hypothesis i's total: acoustic, first-pass LM, our LM, word penalty, OOV penalty."""
    lm = weights.lm_weight
    return [weights.am_weight * arrays.am[i], lm * (1 - weights.interp_weight) * arrays.lm[i],
            lm * weights.interp_weight * arrays.nnlm[i], weights.word_penalty * arrays.num_words[i],
            -weights.oov_penalty * arrays.num_oov[i]]


def _set_view(s: EvaluatedSet, weights: Weights) -> dict[str, Any]:
    e, arrays = s.evaluation, s.arrays
    first = arrays.offsets[:-1]
    errors = s.table.hyp_errors
    changed = []
    for u in np.flatnonzero(e.choices != first):
        utt = s.utterances[u]
        ref = split_words(utt.ref or "")
        before, after = int(first[u]), int(e.choices[u])
        delta = int(errors[after]) - int(errors[before])
        lines = []
        for role, label, i in (("first", "first pass", before), ("rescored", "rescored", after)):
            n = i - int(first[u])
            parts = weighted_parts(arrays, weights, i)
            lines.append({"role": role, "label": f"{label} (hypothesis {n + 1})", "errors": int(errors[i]),
                          "ops": sclite_alignment(ref, split_words(utt.hyps[n].text)),
                          "scores": [*parts, sum(parts)]})
        changed.append({"utt_id": utt.utt_id, "position": int(u) + 1, "delta": delta, "ref": " ".join(ref),
                        "kind": "better" if delta < 0 else "worse" if delta > 0 else "same", "lines": lines})
    return {
        "name": s.name, "role": s.role, "utterances": len(s.utterances), "ref_words": e.rescored.ref_words,
        "first_pass": 100 * e.first_pass.wer, "acoustic_only": 100 * e.acoustic_only.wer,
        "rescored": 100 * e.rescored.wer, "oracle": 100 * e.oracle.wer, "delta": 100 * e.interval.delta,
        "low": 100 * e.interval.low, "high": 100 * e.interval.high, "gain_share": 100 * e.gain_share,
        "oov_rate": 100 * s.oov_words / max(s.words, 1),
        "error_types": [{"name": name, "s": r.substitutions, "d": r.deletions, "i": r.insertions}
                        for name, r in (("first pass", e.first_pass), ("rescored", e.rescored),
                                        ("oracle", e.oracle))],
        "changed": changed, "improved": sum(c["kind"] == "better" for c in changed),
        "worsened": sum(c["kind"] == "worse" for c in changed), "same": sum(c["kind"] == "same" for c in changed),
    }


def render_html_report(document: dict[str, Any], sets: Sequence[EvaluatedSet], plot: Path | None) -> str:
    weights = Weights(**document["weights"])
    tuning = document["tuning"]
    environment = jinja2.Environment(loader=jinja2.PackageLoader("rescorer", "templates"),
                                     autoescape=True, undefined=jinja2.StrictUndefined)
    return environment.get_template("report.html.j2").render(
        model=document["model"], dev_name=document["dev"]["name"], weights=document["weights"], tuning=tuning,
        baselines=[{"name": BASELINE_NAMES.get(k, k) + (f" (s = {v['lm_weight']:.4g})" if "lm_weight" in v else ""),
                    "errors": v["errors"], "wer": v["wer"]} for k, v in tuning["baselines"].items()],
        plot=base64.b64encode(plot.read_bytes()).decode("ascii") if plot is not None and plot.exists() else None,
        sets=[_set_view(s, weights) for s in sets])


def write_html_report(document: dict[str, Any], sets: Sequence[EvaluatedSet], out_dir: Path) -> Path:
    path = out_dir / "report.html"
    write_text_atomic(path, render_html_report(document, sets, out_dir / document["plot"]))
    return path
