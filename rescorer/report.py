"""The WER evaluation job's outputs: a Markdown report, a JSON file with every figure, a plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rescorer.atomic import atomic_file, make_directory, write_text_atomic
from rescorer.tuning import BASELINE_NAMES, TuningResult


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


def markdown_report(document: dict[str, Any]) -> str:
    w, t = document["weights"], document["tuning"]
    lines = [
        f"# Rescoring report: {document['model']}", "",
        *([f"A subword LM ({document['tokenizer']['pieces']} {document['tokenizer']['model_type']} pieces,"
           f" sentencepiece {document['tokenizer']['sha256'][:12]}): its scores are sums over each hypothesis's"
           " pieces; the word penalty and the OOV counts count words and `<unk>` pieces.", ""]
          if document.get("tokenizer") else []),
        f"Weights tuned on **{document['dev']['name']}** ({t['method']}; {t['line_searches']} line searches,"
        f" {t['seconds']:.2f} s), frozen, then applied to the test sets: am_weight {w['am_weight']:.6g},"
        f" lm_weight {w['lm_weight']:.6g}, interp_weight {w['interp_weight']:.6g},"
        f" word_penalty {w['word_penalty']:.6g}, oov_penalty {w['oov_penalty']:.6g}.", "",
        "What the tuner saw on dev:", "",
        "| dev combination | errors | WER % |", "|---|---|---|",
    ]
    for key, row in t["baselines"].items():
        extra = f" (s = {row['lm_weight']:.4g})" if "lm_weight" in row else ""
        lines.append(f"| {BASELINE_NAMES.get(key, key)}{extra} | {row['errors']} | {_pct(row['wer'])} |")
    lines.append("")
    if t["plateaus"]:
        lines.append("Along each tuned weight, with the others held, the same dev errors hold over " + "; ".join(
                         f"{name} {low:.6g} to {high:.6g}" for name, (low, high) in t["plateaus"].items()) + ".")
        lines.append("")
    for warning in t["warnings"]:
        lines.append(f"**Warning:** {warning}.")
    if t["warnings"]:
        lines.append("")
    lines += [
        "| set | utts | words | first pass | acoustic only | rescored | oracle | change (95% CI) | gain share | S / D / I after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in document["sets"]:
        e, b = s["evaluation"], s["evaluation"]["bootstrap"]
        r = e["rescored"]
        lines.append(
            f"| {s['name']} | {r['sentences']} | {r['ref_words']} | {_pct(e['first_pass']['wer'])} |"
            f" {_pct(e['acoustic_only']['wer'])} | **{_pct(r['wer'])}** | {_pct(e['oracle']['wer'])} |"
            f" {100 * b['delta']:+.2f} ({100 * b['low']:+.2f}, {100 * b['high']:+.2f}) | {100 * e['gain_share']:.1f} % |"
            f" {r['substitutions']} / {r['deletions']} / {r['insertions']} |"
        )
    lines += ["", "WER in %. Change: rescored minus first pass, with a paired bootstrap interval over utterances"
              " (1000 resamples). Gain share: the part of the first-pass-to-oracle gap that rescoring closed.", ""]
    for s in document["sets"]:
        e = s["evaluation"]
        lines.append(f"- {s['name']}: {e['utterances_changed']} utterances changed their 1-best,"
                     f" {e['utterances_improved']} improved, {e['utterances_worsened']} got worse;"
                     f" {s['oov_words']} of {s['words']} hypothesis words scored as <unk>.")
    lines += ["", f"Plot: `{document['plot']}`.", ""]
    return "\n".join(lines)


def plot_tuning(tuning: TuningResult, path: Path, title: str) -> None:
    """Dev WER along each tuned weight through the chosen point (exact step functions), the
    chosen value marked; x on a symmetric log scale linear within one unit of 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = tuning.lines or {}
    fig, axes = plt.subplots(1, max(1, len(lines)), figsize=(4.2 * max(1, len(lines)), 3.6), squeeze=False)
    for ax, (name, line) in zip(axes[0], lines.items(), strict=False):
        axis = tuning.axes[name]
        xs = np.append(line.knots, line.high)
        ys = 100 * np.append(line.errors, line.errors[-1]) / tuning.ref_words
        ax.step(xs, ys, where="post")
        ax.plot([getattr(tuning.weights, name)], [100 * tuning.wer], "r*", markersize=12)
        if axis.high - axis.low > 10 * axis.unit:
            ax.set_xscale("symlog", linthresh=axis.unit)
            ax.tick_params(axis="x", labelrotation=45, labelsize=7)
        ax.set_xlabel(name)
        ax.set_ylabel("dev WER (%)")
    if not lines:
        axes[0][0].text(0.5, 0.5, "every weight fixed", ha="center", va="center")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_reports(document: dict[str, Any], out_dir: Path) -> None:
    make_directory(out_dir)
    write_text_atomic(out_dir / "report.json", json.dumps(document, indent=2, default=_json_default) + "\n")
    write_text_atomic(out_dir / "report.md", markdown_report(document))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
