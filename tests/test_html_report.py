"""The evaluation's error-analysis page: self-contained, and every changed utterance on it with
its three aligned lines and score components (read with an HTML parser, not a regex)."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from rescorer.artifact import save_artifact
from rescorer.cli import main as rescorer_cli
from rescorer.wer.alignment import sclite_alignment
from tests.conftest import shared_data
from tests.nbest_fixtures import tiny_artifact
from training.demo_nbest import write_demo_nbest


class Page(HTMLParser):
    """Collects the changed-utterance blocks (tbody.utt): their attributes and, per row class,
    the cell texts and the marked spans; and every URL-bearing attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks: list[dict] = []
        self.urls: list[str] = []
        self._row: dict | None = None
        self._cell: list[str] | None = None
        self._span: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            if key in attrs:
                self.urls.append(attrs[key])
        if tag == "tbody" and "utt" in (attrs.get("class") or ""):
            self.blocks.append({**attrs, "rows": {}})
        elif tag == "tr" and self.blocks and attrs.get("class") in ("ref", "first", "rescored"):
            self._row = {"cells": [], "marks": []}
            self.blocks[-1]["rows"][attrs["class"]] = self._row
        elif tag == "td" and self._row is not None:
            self._cell = []
            self._row["cells"].append(self._cell)
        elif tag == "span" and self._row is not None:
            self._span = attrs.get("class")

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None
        elif tag == "span":
            self._span = None

    def handle_data(self, data):
        if self._cell is not None and self._row is not None:
            self._cell.append(data)
            if self._span in ("sub", "del", "ins"):
                self._row["marks"].append((self._span, data))


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    lists = write_demo_nbest(root / "nbest")
    lm = save_artifact(tiny_artifact(), root / "lm")
    assert rescorer_cli(["eval", str(lm), "--dev", str(lists["dev"]), "--test", str(lists["test"]),
                         "--out", str(root / "rep"), "--no-progress"]) == 0
    return root / "rep"


def test_every_changed_utterance_is_on_the_page_with_three_aligned_lines_and_its_scores(demo_report):
    report = json.loads((demo_report / "report.json").read_text())
    page = Page()
    page.feed((demo_report / "report.html").read_text())
    test_changes = report["sets"][0]["evaluation"]["changes"]
    dev_changes = report["dev_set"]["evaluation"]["changes"]
    assert len(page.blocks) == len(test_changes) + len(dev_changes) > 0
    for block, change in zip(page.blocks, test_changes + dev_changes, strict=True):
        assert block["data-utt-id"] == change["utt_id"]
        assert int(block["data-delta"]) == change["errors_after"] - change["errors_before"]
        assert set(block["rows"]) == {"ref", "first", "rescored"}
        for role, _text, errors in (("first", change["before"], change["errors_before"]),
                                   ("rescored", change["after"], change["errors_after"])):
            row = block["rows"][role]
            cells = ["".join(c).strip() for c in row["cells"]]
            assert int(cells[2]) == errors
            scores = [float(c) for c in cells[3:]]
            assert len(scores) == 6 and scores[-1] == pytest.approx(sum(scores[:-1]), abs=5e-3)
        # the marks are the alignment's: one per error of the rescored line
        ref = next("".join(c).strip() for c in [block["rows"]["ref"]["cells"][2]])
        ops = sclite_alignment(ref.split(), change["after"].split())
        marks = block["rows"]["rescored"]["marks"]
        assert len(marks) == sum(op != "C" for op, _, _ in ops)


def test_the_page_is_self_contained(demo_report):
    page = Page()
    text = (demo_report / "report.html").read_text()
    page.feed(text)
    assert page.urls and all(url.startswith("data:") for url in page.urls)  # the plot, embedded
    assert "http://" not in text and "https://" not in text


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test-slow installs it)")
def test_a_librispeech_page_renders_in_headless_chromium_and_its_filter_changes_the_rows(tmp_path):
    """A real evaluation (LibriSpeech dev_other -> test_other, first 600 lists, the tiny LM):
    the page renders (a screenshot that is not blank), and choosing 'worse' shows fewer rows."""
    from rescorer.formats.jsonl import write_jsonl
    from rescorer.formats.reader import NbestSource, read_nbest

    nbest = shared_data("librispeech-espnet2-hubert-30best/nbest")
    for split in ("dev_other", "test_other"):
        utts = read_nbest(NbestSource(str(nbest / f"{split}.jsonl.gz"), score_mapping="am=0.6*decoder+0.4*ctc,lm=lm"))
        with open(tmp_path / f"{split}.jsonl", "w") as out:
            write_jsonl(utts[:600], out)
    lm = save_artifact(tiny_artifact(), tmp_path / "lm")
    assert rescorer_cli(["eval", str(lm), "--dev", str(tmp_path / "dev_other.jsonl"), "--test",
                         str(tmp_path / "test_other.jsonl"), "--out", str(tmp_path / "rep"), "--no-progress"]) == 0
    page = tmp_path / "rep" / "report.html"
    assert page.stat().st_size < 8 << 20
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1200,1600", page.as_uri()], capture_output=True, timeout=120, check=True)
    from PIL import Image  # matplotlib's dependency

    image = Image.open(shot).convert("L")
    assert len(set(image.getdata())) > 10  # not blank
    script = """
      const c = document.querySelector('.controls'); const f = c.querySelector('.filter');
      const rows = () => Array.from(document.querySelectorAll('table.changes[data-set="0"] tbody.utt'));
      const visible = () => rows().filter(r => r.style.display !== 'none').length;
      const kept = () => parseInt(c.querySelector('.count').textContent);
      const all = [kept(), visible()]; f.value = 'worse'; f.dispatchEvent(new Event('change'));
      const worse = rows().filter(r => r.style.display !== 'none' && r.dataset.kind !== 'worse').length;
      document.title = [...all, kept(), visible(), worse].join(' ');
    """
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", f"<script>{script}</script></body>"))
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    all_kept, all_shown, worse_kept, worse_shown, others_shown = map(int, dom.split("<title>")[1].split("</title>")[0].split())
    assert all_kept > worse_kept > 0 and all_shown == min(all_kept, 50)  # one page of 50 shown
    assert worse_shown == min(worse_kept, 50) and others_shown == 0  # the filter shows only the worse ones
