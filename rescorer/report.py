"""The WER evaluation job's outputs: a Markdown report, a JSON file with every figure, a plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rescorer.atomic import atomic_file, make_directory, write_text_atomic
from rescorer.tuning import TuningResult


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


def markdown_report(document: dict[str, Any]) -> str:
    w = document["weights"]
    lines = [
        f"# Rescoring report: {document['model']}", "",
        f"Weights tuned on **{document['dev']['name']}** by grid search ({document['tuning']['grid_points']} points),"
        f" frozen, then applied to the test sets: am_weight {w['am_weight']:g}, lm_weight {w['lm_weight']:g},"
        f" interp_weight {w['interp_weight']:g}, word_penalty {w['word_penalty']:g}, oov_penalty {w['oov_penalty']:g}.",
        f"Dev WER at these weights: {_pct(document['tuning']['dev_wer'])} %."
        + (f" The best point lay on the grid's edge, so the grid was extended ({'; '.join(document['tuning']['extended'])})."
           if document["tuning"].get("extended") else ""), "",
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


def plot_surface(tuning: TuningResult, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = tuning.grid
    surface = 100 * tuning.surface  # (lm_weights, interp_weights)
    surface_plot = len(grid.interp_weights) > 1  # without first-pass LM scores only interp 1 exists
    fig, axes = plt.subplots(1, 2 if surface_plot else 1, figsize=(11 if surface_plot else 6, 4.2), squeeze=False)
    axes = axes[0]
    if surface_plot:
        image = axes[0].imshow(surface.T, origin="lower", aspect="auto", cmap="viridis",
                               extent=(grid.lm_weights[0], grid.lm_weights[-1], grid.interp_weights[0], grid.interp_weights[-1]))
        axes[0].plot(tuning.weights.lm_weight, tuning.weights.interp_weight, "r*", markersize=12)
        axes[0].set_xlabel("lm_weight")
        axes[0].set_ylabel("interp_weight (share of the neural LM)")
        fig.colorbar(image, ax=axes[0], label="dev WER (%)")
    lines = axes[-1]
    for j, interp in enumerate(grid.interp_weights):
        if len(grid.interp_weights) > 6 and j % 2:
            continue
        lines.plot(grid.lm_weights, surface[:, j], label=f"interp {interp:g}")
    lines.set_xlabel("lm_weight")
    lines.set_ylabel("dev WER (%)")
    lines.legend(fontsize=7)
    fig.suptitle(f"{title} (word_penalty {tuning.weights.word_penalty:g})")
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
