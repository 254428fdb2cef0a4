import pytest
import torch

from tests.conftest import tiny_config
from training.schedule import Schedule
from training.train import train


def run_schedule(config, dev_ppls):
    """(rate, done-after) of each epoch when the dev perplexities come out as given."""
    schedule, seen = Schedule(), []
    for ppl in dev_ppls:
        if schedule.done(config):
            break
        seen.append(schedule.lr(config))
        schedule.advance(config, ppl)
    return seen, schedule


def test_rate_is_fixed_until_the_improvement_falls_below_the_threshold_then_halves_for_anneal_epochs(tmp_path):
    config = tiny_config({"train": "t", "dev": "d"}, tmp_path, lr=1.0, anneal_threshold=0.003, anneal_epochs=3,
                         max_epochs=25)
    # epoch 3 improves by 0.1 % (< 0.3 %): annealing starts; three halved epochs follow, then stop
    lrs, schedule = run_schedule(config, [200, 150, 149.85, 140, 130, 125, 124, 123])
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.25, 0.125]
    assert schedule.anneal_start == 3 and schedule.done(config) and schedule.best_dev_ppl == 125


def test_max_epochs_caps_the_run_and_a_worse_epoch_starts_annealing(tmp_path):
    config = tiny_config({"train": "t", "dev": "d"}, tmp_path, lr=2.0, anneal_epochs=5, max_epochs=4)
    lrs, schedule = run_schedule(config, [200, 210, 150, 140, 130])
    assert lrs == [2.0, 2.0, 1.0, 0.5] and schedule.epoch == 4 and schedule.done(config)


def test_the_schedule_survives_a_round_trip_and_a_replay_of_the_history(tmp_path):
    config = tiny_config({"train": "t", "dev": "d"}, tmp_path, anneal_epochs=4, max_epochs=25)
    ppls = [300, 200, 199.9, 190, 185]
    _, schedule = run_schedule(config, ppls)
    schedule.global_step = 77
    assert Schedule(**schedule.to_dict()) == schedule
    replayed = Schedule.from_history([{"dev_normalized_ppl": p} for p in ppls], config, global_step=77)
    assert replayed == schedule


def untimed(history):
    return [{k: v for k, v in r.items() if "second" not in k} for r in history]


@pytest.mark.parametrize("override", ["anneal_epochs", "max_epochs"])
def test_a_finished_run_resumed_with_a_larger_budget_equals_a_run_given_that_budget_from_the_start(
        demo_corpus, tmp_path, override):
    # anneal_threshold 1.0: every epoch after the first "improves too little", so annealing
    # starts at epoch 2 whatever the data
    small = {"anneal_epochs": 1, "max_epochs": 10} if override == "anneal_epochs" else {"anneal_epochs": 5, "max_epochs": 2}
    large = {**small, override: small[override] + 2}
    straight = train(tiny_config(demo_corpus, tmp_path / "a", anneal_threshold=1.0, **large), progress=False)
    first = train(tiny_config(demo_corpus, tmp_path / "b", anneal_threshold=1.0, **small), progress=False)
    assert len(first.history) < len(straight.history)
    resumed = train(tiny_config(demo_corpus, tmp_path / "b", anneal_threshold=1.0, **large), resume=True, progress=False)
    assert untimed(resumed.history) == untimed(straight.history)
    expected = [1.0, 1.0, 0.5, 0.25, 0.125] if override == "anneal_epochs" else [1.0, 1.0, 0.5, 0.25]
    assert [r["lr"] for r in resumed.history] == expected


def test_a_checkpoint_of_another_format_is_refused_on_resume(demo_corpus, tmp_path):
    from training.train import ResumeError

    train(tiny_config(demo_corpus, tmp_path / "b", max_epochs=1), progress=False)
    path = tmp_path / "b" / "checkpoint.pt"
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["format"] = 1
    torch.save(checkpoint, path)
    with pytest.raises(ResumeError, match="format 1"):
        train(tiny_config(demo_corpus, tmp_path / "b", max_epochs=2), resume=True, progress=False)
