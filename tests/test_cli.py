import json

from rescorer.cli import main as rescorer_main
from training.cli import main as train_main

TINY = ["--embedding-dim", "16", "--hidden-dim", "16", "--num-layers", "1", "--batch-size", "8",
        "--noise-samples", "16", "--max-epochs", "1", "--no-progress"]


def test_train_then_evaluate_with_recentering_prints_and_writes_json(demo_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_main(["train", "--train", str(demo_corpus["train"]), "--dev", str(demo_corpus["dev"]),
                       "--out", str(run), *TINY]) == 0
    assert "artifact:" in capsys.readouterr().out
    report_path = tmp_path / "eval.json"
    assert train_main(["evaluate", str(run / "artifact"), str(demo_corpus["dev"]), "--recenter",
                       "--json", str(report_path)]) == 0
    out = capsys.readouterr().out
    assert "normalized perplexity" in out and "re-centered" in out
    report = json.loads(report_path.read_text())
    assert abs(report["recentered"]["log_z_mean"]) < 1e-4
    assert report["num_sentences"] == 200
    assert rescorer_main(["info", str(run / "artifact")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["output_kind"] == "self_normalized"
    assert info["log_z"] == report["recentered"]["log_z"]


def test_bad_inputs_exit_non_zero_with_a_message_naming_the_problem(demo_corpus, tmp_path, capsys):
    missing = tmp_path / "missing.txt"
    code = train_main(["train", "--train", str(missing), "--dev", str(demo_corpus["dev"]),
                       "--out", str(tmp_path / "r1"), *TINY])
    assert code == 2 and "missing.txt: corpus file not found" in capsys.readouterr().err
    assert not (tmp_path / "r1" / "artifact").exists()

    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xc3\x28 broken\n")
    code = train_main(["train", "--train", str(bad), "--dev", str(demo_corpus["dev"]),
                       "--out", str(tmp_path / "r2"), *TINY])
    assert code == 2 and "bad.txt:2: not UTF-8" in capsys.readouterr().err

    empty = tmp_path / "empty.txt"
    empty.write_text("")
    code = train_main(["train", "--train", str(empty), "--dev", str(demo_corpus["dev"]),
                       "--out", str(tmp_path / "r3"), *TINY])
    assert code == 2 and "empty corpus" in capsys.readouterr().err

    assert rescorer_main(["info", str(tmp_path)]) == 2
    assert "config.json: missing" in capsys.readouterr().err


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert train_main(["train", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err


def test_resume_keeps_the_stored_epoch_budget_unless_a_larger_one_is_given(demo_corpus, tmp_path):
    run = tmp_path / "run"
    common = ["--out", str(run), *TINY[:-3], "--no-progress"]  # TINY without its --max-epochs 1
    # threshold 1.0: annealing starts at epoch 2, so one annealing epoch ends the run at epoch 3
    assert train_main(["train", "--train", str(demo_corpus["train"]), "--dev", str(demo_corpus["dev"]),
                       "--anneal-threshold", "1.0", "--anneal-epochs", "1", "--max-epochs", "10", *common]) == 0

    def epochs():
        return [r["epoch"] for r in json.loads((run / "history.json").read_text())]

    assert epochs() == [1, 2, 3]
    assert train_main(["train", "--resume", *common]) == 0  # the stored budget: nothing more to do
    assert epochs() == [1, 2, 3]
    assert train_main(["train", "--resume", "--anneal-epochs", "2", *common]) == 0
    assert epochs() == [1, 2, 3, 4]
    assert train_main(["train", "--resume", "--max-epochs", "4", "--anneal-epochs", "5", *common]) == 0
    assert epochs() == [1, 2, 3, 4]  # capped by max_epochs
