"""Distillation (paper 2): the losses' limits, mixture-of-softmaxes teachers, ensembles, the
self-normalized `nce-tr` student, and `rescorer-train distill` end to end."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rescorer.artifact import load_artifact
from rescorer.errors import ConfigError
from rescorer.model import LstmLanguageModel, ModelConfig
from tests.conftest import tiny_config, with_other_vocabulary
from training.cli import main as train_cli
from training.losses import distillation_loss, kld_importance_weights, nce_kld_loss, trust_gamma, trust_weight
from training.noise import UnigramNoise
from training.objective import TrainingObjective
from training.reference import FrozenReference
from training.regularization import Regularization, RegularizedFeatures
from training.train import train


def _distributions(N=7, V=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    student = torch.log_softmax(torch.randn(N, V, generator=g, dtype=torch.float64), -1).requires_grad_()
    teacher = torch.log_softmax(torch.randn(N, V, generator=g, dtype=torch.float64) * 2, -1)
    targets = torch.randint(0, V, (N,), generator=g)
    return student, teacher, targets, torch.ones(N, dtype=torch.bool)


def test_trust_regularization_with_a_zero_is_kl_only():
    student, teacher, y, mask = _distributions()
    tr = distillation_loss(student, teacher, y, mask, "tr", trust=0.0)
    kl = distillation_loss(student, teacher, y, mask, "kl")
    torch.testing.assert_close(tr, kl)
    expected = -(teacher.exp() * student).sum()  # Eq. 4
    torch.testing.assert_close(kl, expected)


def test_interpolation_with_alpha_one_is_cross_entropy_and_zero_is_kl():
    student, teacher, y, mask = _distributions()
    torch.testing.assert_close(distillation_loss(student, teacher, y, mask, "interp", alpha=1.0),
                               F.nll_loss(student, y, reduction="sum"))
    torch.testing.assert_close(distillation_loss(student, teacher, y, mask, "interp", alpha=0.0),
                               distillation_loss(student, teacher, y, mask, "kl"))


def test_trust_weight_follows_eq_6_and_carries_no_gradient():
    student, teacher, y, mask = _distributions()
    q_y = teacher.gather(1, y[:, None])[:, 0].exp()
    r = trust_weight(teacher.gather(1, y[:, None])[:, 0], 0.1)
    torch.testing.assert_close(r, -0.1 * torch.log(1 - q_y))  # Eq. 6
    loss = distillation_loss(student, teacher, y, mask, "tr", trust=0.1)
    (grad,) = torch.autograd.grad(loss, student)
    # d/dP of R L_CE + L_KL with R constant: -R at y, -Q elsewhere (in log space)
    expected = -teacher.exp()
    expected[torch.arange(len(y)), y] -= r
    torch.testing.assert_close(grad, expected)
    assert math.isfinite(float(trust_weight(torch.zeros(1), 0.1)))  # a certain teacher: floored, finite


def _model(kind="softmax", experts=1, V=13, D=6, seed=0):
    torch.manual_seed(seed)
    return LstmLanguageModel(ModelConfig(vocab_size=V, embedding_dim=D, hidden_dim=D, num_layers=1, dropout=0.0,
                                         output_kind=kind, experts=experts))


def test_a_mixture_of_one_softmax_equals_the_softmax_model_with_the_same_weights():
    softmax, mos = _model("softmax"), _model("mos", experts=1)
    state = mos.state_dict()
    state.update(softmax.state_dict())
    state["expert_projection.weight"] = torch.eye(6)
    mos.load_state_dict(state)
    features = torch.randn(4, 6)
    torch.testing.assert_close(mos.log_probs(features), torch.log_softmax(softmax.logits(features), -1))
    ids = torch.tensor([[1, 4, 5, 2]])
    torch.testing.assert_close(mos.log_prob_of(mos.features(ids)[0], ids), softmax.log_prob_of(softmax.features(ids)[0], ids))


def test_a_mixture_of_several_softmaxes_is_normalized_and_refuses_experts_elsewhere():
    mos = _model("mos", experts=3)
    log_p = mos.log_probs(torch.randn(5, 6))
    torch.testing.assert_close(log_p.exp().sum(-1), torch.ones(5))
    with pytest.raises(ValueError, match="experts"):
        ModelConfig(vocab_size=5, output_kind="softmax", experts=2)


def test_an_ensemble_of_one_equals_its_member_and_two_average_probabilities():
    a, b = _model("softmax", seed=1), _model("mos", experts=2, seed=2)
    ids = torch.tensor([[0, 3, 4, 5]])
    targets, samples = torch.tensor([3, 4, 5, 1]), torch.tensor([2, 7, 7])
    one = FrozenReference([a])
    features, _ = one.features(ids, None)
    torch.testing.assert_close(one.log_probs(features), a.log_probs(features[0][0]))
    both = FrozenReference([a, b])
    features, _ = both.features(ids, None)
    expected = torch.log((a.log_probs(features[0][0]).exp() + b.log_probs(features[1][0]).exp()) / 2)
    torch.testing.assert_close(both.log_probs(features), expected)
    at_y, at_s = both.log_probs_at(features, targets, samples)
    torch.testing.assert_close(at_y, expected.gather(1, targets[:, None])[:, 0])
    torch.testing.assert_close(at_s, expected[:, samples])


def test_temperature_one_changes_nothing():
    model = _model("mos", experts=2)
    features = torch.randn(3, 6)
    torch.testing.assert_close(model.log_probs(features, temperature=1.0), model.log_probs(features))
    reference = FrozenReference([model], temperature=1.0)
    torch.testing.assert_close(reference.log_probs((features[None],)), model.log_probs(features))


def test_no_gradient_reaches_a_teacher_and_the_student_learns():
    teachers = [_model("softmax", seed=1), _model("mos", experts=2, seed=2)]
    before = [{k: v.clone() for k, v in t.state_dict().items()} for t in teachers]
    reference = FrozenReference(teachers)
    student = _model("softmax", seed=3)
    for loss in ("kl", "interp", "tr"):
        objective = TrainingObjective(student, loss, bos_id=0, reference=reference, trust_a=0.1)
        ids, targets = torch.tensor([[0, 3, 4]]), torch.tensor([[3, 4, 1]])
        value, _ = objective(ids, targets, None, None, reference.features(ids, None)[0])
        value.backward()
        assert student.lstm.weight_hh_l0.grad is not None
    for teacher, state in zip(teachers, before, strict=True):
        assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
        assert all(torch.equal(state[k], v) for k, v in teacher.state_dict().items())


def test_the_nce_tr_students_loss_is_nce_kld_at_the_gammas_it_computes():
    teachers = FrozenReference([_model("softmax", seed=1), _model("mos", experts=2, seed=2)])
    student = _model("self_normalized", seed=3)
    V = 13
    noise = UnigramNoise(np.arange(V) + 1.0)
    objective = TrainingObjective(student, "nce-tr", bos_id=0, noise=noise, reference=teachers, trust_a=0.3)
    ids, targets = torch.tensor([[0, 3, 4, 5]]), torch.tensor([[3, 4, 5, 1]])
    samples = torch.tensor([2, 4, 4, 9, 12])
    features = teachers.features(ids, None)[0]
    loss, _ = objective(ids, targets, None, samples, features)
    y = targets.reshape(-1)
    teacher_y, teacher_s = teachers.log_probs_at(features, y, samples)
    gamma = trust_gamma(teacher_y, 0.3)
    r = trust_weight(teacher_y, 0.3)
    torch.testing.assert_close(gamma, r / (1 + r))
    h = student.features(ids)[0].reshape(-1, 6)
    scores = student.logits(h) - student.log_z  # (N, V), only to build the expected value
    expected = nce_kld_loss(scores.gather(1, y[:, None])[:, 0], scores[:, samples], noise.log_probs[y],
                            noise.log_probs[samples], teacher_y, teacher_s, (samples[None] == y[:, None]).sum(-1),
                            gamma, y != 0)
    torch.testing.assert_close(loss, expected)
    weights = kld_importance_weights(noise.log_probs[y], noise.log_probs[samples], teacher_y, teacher_s,
                                     (samples[None] == y[:, None]).sum(-1), gamma)
    assert torch.isfinite(weights.z).all()


def test_regularized_features_with_every_rate_zero_equal_the_models_features():
    model = _model("softmax")
    model.train()
    ids = torch.tensor([[0, 3, 4, 5], [0, 6, 7, 8]])
    plain, state = model.features(ids)
    regularized, reg_state, penalty = RegularizedFeatures(model, Regularization())(ids, None)
    torch.testing.assert_close(regularized, plain)
    torch.testing.assert_close(reg_state[0], state[0])
    assert float(penalty) == 0.0
    ar = RegularizedFeatures(model, Regularization(activation_reg=2.0, temporal_activation_reg=3.0))
    features, _, penalty = ar(ids, None)
    raw, _ = model.lstm(model.embedding(ids))
    expected = 2.0 * features.pow(2).mean() + 3.0 * (raw[:, 1:] - raw[:, :-1]).pow(2).mean()
    torch.testing.assert_close(penalty, expected)


def test_weight_drop_masks_the_recurrent_weights_per_batch_but_leaves_them_stored_intact():
    model = _model("softmax")
    model.train()
    before = model.lstm.weight_hh_l0.clone()
    regularized = RegularizedFeatures(model, Regularization(weight_drop=0.5))
    ids = torch.tensor([[0, 3, 4, 5]])
    torch.manual_seed(0)
    a = regularized(ids, None)[0]
    torch.manual_seed(1)
    b = regularized(ids, None)[0]
    assert not torch.allclose(a, b)  # a different DropConnect mask per call
    assert torch.equal(model.lstm.weight_hh_l0, before)
    a.sum().backward()
    assert model.lstm.weight_hh_l0.grad is not None


@pytest.fixture(scope="module")
def teachers(demo_corpus, tmp_path_factory) -> list[Path]:
    """Two demo-sized members: a softmax model and a regularized mixture of softmaxes."""
    out = tmp_path_factory.mktemp("teachers")
    a = train(tiny_config(demo_corpus, out / "a", loss="ce", max_epochs=1), progress=False).artifact_path
    b = train(tiny_config(demo_corpus, out / "b", loss="ce", output_kind="mos", experts=2, weight_drop=0.2,
                          variational_dropout=0.1, embedding_dropout=0.1, activation_reg=1.0,
                          temporal_activation_reg=1.0, max_epochs=1), progress=False).artifact_path
    return [a, b]


def _distill(demo_corpus, teachers, out, loss, capsys, *extra):
    code = train_cli(["distill", *sum((["--teacher", str(t)] for t in teachers), []), "--loss", loss,
                      "--train", str(demo_corpus["train"]), "--dev", str(demo_corpus["dev"]), "--out", str(out),
                      "--embedding-dim", "16", "--hidden-dim", "16", "--num-layers", "1", "--batch-size", "8",
                      "--bptt", "10", "--noise-samples", "32", "--max-epochs", "1", "--no-progress", *extra])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("loss", ["tr", "nce-tr"])
def test_distill_writes_a_student_that_names_its_teachers_and_scores_like_the_rescorer(
        demo_corpus, teachers, tmp_path, capsys, monkeypatch, loss):
    from rescorer.cli import main as rescorer_cli

    code, err = _distill(demo_corpus, teachers, tmp_path / "run", loss, capsys)
    assert code == 0, err
    artifact_dir = tmp_path / "run" / "artifact"
    assert rescorer_cli(["info", str(artifact_dir)]) == 0
    config = json.loads((artifact_dir / "config.json").read_text())
    distillation = config["provenance"]["distillation"]
    assert [t["path"] for t in distillation["teachers"]] == [str(t) for t in teachers]
    assert all(len(t["sha256"]) == 64 for t in distillation["teachers"]) and distillation["loss"] == loss
    assert config["output_kind"] == ("self_normalized" if loss == "nce-tr" else "softmax")
    student = load_artifact(artifact_dir)
    assert student.model.config.hidden_dim == 16
    if loss == "nce-tr":
        _scored_and_served_without_a_softmax(artifact_dir, tmp_path, monkeypatch)


def _scored_and_served_without_a_softmax(artifact_dir, tmp_path, monkeypatch):
    import httpx

    from rescorer.cli import main as rescorer_cli
    from server.settings import Settings
    from tests.server_harness import running_server

    def forbidden(*args, **kwargs):
        raise AssertionError("a self-normalized student must be scored without a softmax")

    monkeypatch.setattr(LstmLanguageModel, "logits", forbidden)
    monkeypatch.setattr(LstmLanguageModel, "log_probs", forbidden)
    text = tmp_path / "text"
    text.write_text("k1 the cook bakes bread\nk2 a sailor ties a net\n")
    assert rescorer_cli(["score", str(artifact_dir), str(text), str(tmp_path / "costs")]) == 0
    cli_costs = (tmp_path / "costs").read_text().split()
    with running_server(Settings(model_dir=artifact_dir, telemetry_share=0.0)) as (url, _):
        response = httpx.post(f"{url}/v1/score/kaldi", content=text.read_bytes(), timeout=10)
    assert response.status_code == 200
    served = response.text.split()
    assert served[0::2] == cli_costs[0::2] == ["k1", "k2"]
    np.testing.assert_allclose([float(c) for c in served[1::2]], [float(c) for c in cli_costs[1::2]], atol=1e-4)


def test_distill_refuses_bad_input_with_exit_2_and_writes_nothing(demo_corpus, teachers, tmp_path, capsys):
    with_other_vocabulary(teachers[0], tmp_path / "other")
    plain = tmp_path / "plain"
    plain.mkdir()
    cases = [
        ([teachers[0], tmp_path / "other"], "tr", [], "vocabulary"),
        ([plain], "tr", [], "--teacher"),
        ([teachers[0]], "tr", ["--trust-a", "-1"], "trust_a"),
        ([teachers[0]], "interp", ["--alpha", "1.5"], "alpha"),
        ([teachers[0]], "interp", ["--alpha", "nan"], "alpha"),
        ([teachers[0]], "tr", ["--trust-a", "inf"], "trust_a: inf (expected a finite number)"),
        ([teachers[0]], "tr", ["--lr", "inf"], "lr: inf (expected a finite number)"),
        ([teachers[0]], "tr", ["--teacher-top-k", "0", "--teacher-tail", "student"], "--teacher-top-k > 0"),
        ([teachers[0]], "kl", ["--teacher-top-k", "0", "--teacher-samples", "4"], "--teacher-top-k > 0"),
        ([teachers[0]], "nce-tr", ["--teacher-top-k", "8", "--teacher-tail", "student"], "loss kl, interp or tr"),
        ([teachers[0]], "tr", ["--teacher-top-k", "8", "--teacher-samples", "4", "--teacher-tail", "student"],
         "without --teacher-samples"),
        ([teachers[0]], "tr", ["--teacher-top-k", "8", "--teacher-tail", "uniform"], "teacher_tail"),
    ]
    for i, (members, loss, extra, expected) in enumerate(cases):
        out = tmp_path / f"out{i}"
        code, err = _distill(demo_corpus, members, out, loss, capsys, *extra)
        assert code == 2 and expected in err and "Traceback" not in err, (members, extra, err)
        assert not out.exists()
    with pytest.raises(SystemExit) as exit_info:  # argparse: a loss that does not exist
        _distill(demo_corpus, teachers, tmp_path / "x", "nonsense", capsys)
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_distill_help_names_every_loss_and_the_teacher_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_cli(["distill", "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert "--teacher" in out and all(loss in out for loss in ("ce", "kl", "interp", "tr", "nce-tr"))
    assert "--trust-a" in out and "--alpha" in out


def _truncated(teacher: torch.Tensor, targets: torch.Tensor, k: int):
    from training.teacher_cache import TruncatedTeacher, truncate

    return TruncatedTeacher(*truncate(teacher, targets, k))


@pytest.mark.parametrize("kind", ["kl", "interp", "tr"])
def test_a_teacher_truncated_to_the_whole_vocabulary_is_the_teacher(kind):
    student, teacher, targets, mask = _distributions()
    exact = distillation_loss(student, teacher, targets, mask, kind, alpha=0.3, trust=0.2)
    stored = distillation_loss(student, _truncated(teacher, targets, 11), targets, mask, kind, alpha=0.3, trust=0.2)
    torch.testing.assert_close(stored, exact)
    bigger_k = distillation_loss(student, _truncated(teacher, targets, 50), targets, mask, kind, alpha=0.3, trust=0.2)
    torch.testing.assert_close(bigger_k, exact)


def test_a_truncated_teacher_keeps_its_mass_its_target_and_its_top_words():
    from training.teacher_cache import TruncatedTeacher
    _, teacher, targets, _ = _distributions(N=5, V=40, seed=3)
    truncated = _truncated(teacher, targets, 6)
    total = truncated.log_probs.exp().sum(-1) + 34 * truncated.rest.exp()
    torch.testing.assert_close(total, torch.ones(5, dtype=total.dtype))
    torch.testing.assert_close(truncated.target, teacher.gather(1, targets[:, None]).squeeze(1))  # exact, always
    words = torch.arange(40)
    looked_up = truncated.at(words, 40, targets)  # (N, V): the top 6 and y exactly, the rest's even share
    top = teacher.topk(6, dim=1).indices
    torch.testing.assert_close(looked_up.gather(1, top), teacher.gather(1, top))
    torch.testing.assert_close(looked_up.gather(1, targets[:, None]), teacher.gather(1, targets[:, None]))
    known = torch.zeros_like(teacher, dtype=torch.bool).scatter_(1, top, True).scatter_(1, targets[:, None], True)
    left = 1 - torch.where(known, teacher.exp(), torch.zeros_like(teacher)).sum(1, keepdim=True)
    even = (left / (~known).sum(1, keepdim=True)).log().expand(-1, 40)
    torch.testing.assert_close(looked_up[~known], even[~known])
    # the KL term: Q exact at the top words and the target, the rest spread like the prior
    student = torch.log_softmax(torch.randn(5, 40, dtype=torch.float64), -1)
    prior = torch.softmax(torch.randn(40, dtype=torch.float64), -1)
    shaped = TruncatedTeacher(truncated.indices, truncated.log_probs, truncated.target, truncated.rest, prior)
    expected = []
    for n in range(5):
        known = torch.zeros(40, dtype=torch.bool)
        known[top[n]] = True
        known[targets[n]] = True
        q = torch.where(known, teacher[n].exp(), torch.zeros(40, dtype=torch.float64))
        q = q + (~known) * prior * (1 - q.sum()) / prior[~known].sum()
        expected.append(-(q * student[n]).sum())
        # the noise-word lookup (nce-tr) reads the same distribution the KL term spreads
        torch.testing.assert_close(shaped.at(words, 40, targets)[n].exp(), q)
    torch.testing.assert_close(shaped.cross_entropy_to(student, targets), torch.stack(expected))


@pytest.mark.parametrize("target_in_top", [True, False])
def test_the_student_tail_has_the_gradient_of_the_teacher_with_the_students_shape_outside_k(target_in_top):
    """tail "student": -[sum_K Q ln P + r ln P(rest)] has the value and gradient of the cross-entropy
    to Q' (Q on K and y; r P(x) / P(rest) on the rest, held fixed) less r H(P(.|rest)), and its
    gradient is the live KL's where the teacher's tail has the student's shape."""
    from training.teacher_cache import TruncatedTeacher, truncate

    g = torch.Generator().manual_seed(11)
    N, V, k = 6, 30, 5
    logits = torch.randn(N, V, generator=g, dtype=torch.float64, requires_grad=True)
    teacher = torch.log_softmax(torch.randn(N, V, generator=g, dtype=torch.float64) * 2, -1)
    top = teacher.topk(k, dim=1).indices
    if target_in_top:
        targets = top[:, 2].clone()
    else:  # y outside the top k: its exact Q(y) is counted apart
        targets = torch.tensor([next(w for w in range(V) if w not in top[n]) for n in range(N)])
    stored = TruncatedTeacher(*truncate(teacher, targets, k), tail="student")
    student = torch.log_softmax(logits, -1)
    ours = stored.cross_entropy_to(student, targets)
    known = torch.zeros(N, V, dtype=torch.bool).scatter_(1, top, True).scatter_(1, targets[:, None], True)
    p = student.exp().detach()
    rest_p = torch.where(known, torch.zeros_like(p), p).sum(1, keepdim=True)
    rest_q = 1 - torch.where(known, teacher.exp(), torch.zeros_like(p)).sum(1, keepdim=True)
    shape = torch.where(known, torch.zeros_like(p), p / rest_p)  # the student's distribution outside K
    q_prime = torch.where(known, teacher.exp(), rest_q * shape)
    reference = -(q_prime * student).sum(-1)
    entropy = -(shape * torch.log(shape.clamp_min(1e-300))).sum(-1)
    torch.testing.assert_close(ours, reference - rest_q.squeeze(1) * entropy)
    got, = torch.autograd.grad(ours.sum(), logits, retain_graph=True)
    expected, = torch.autograd.grad(reference.sum(), logits)
    torch.testing.assert_close(got, expected)
    # a live teacher whose tail is shaped like the student: the same gradient as the exact KL
    live = -(q_prime * torch.log_softmax(logits, -1)).sum(-1)
    exact, = torch.autograd.grad(live.sum(), logits)
    torch.testing.assert_close(got, exact)


def test_the_student_tail_stays_finite_when_the_student_has_no_mass_outside_k():
    from training.teacher_cache import TruncatedTeacher, truncate

    teacher = torch.log_softmax(torch.tensor([[3.0, 2.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]]), -1)
    student = torch.log_softmax(torch.tensor([[40.0, 40.0, -60.0, -60.0, -60.0, -60.0, -60.0, -60.0]]), -1)
    stored = TruncatedTeacher(*truncate(teacher, torch.tensor([0]), 2), tail="student")
    loss = stored.cross_entropy_to(student.requires_grad_(), torch.tensor([0]))
    assert torch.isfinite(loss).all()
    grad, = torch.autograd.grad(loss.sum(), student)
    assert torch.isfinite(grad).all()


def test_the_nce_tr_student_reads_the_stored_teacher_as_it_reads_the_live_one(demo_corpus, teachers):
    from training.teacher_cache import TruncatedTeacher, truncate

    members = [load_artifact(t).model for t in teachers]
    reference = FrozenReference(members)
    inputs = torch.randint(0, members[0].config.vocab_size, (3, 5))
    targets = torch.randint(0, members[0].config.vocab_size, (15,))
    samples = torch.randint(0, members[0].config.vocab_size, (9,))
    features, _ = reference.features(inputs, None)
    live_target, live_samples = reference.log_probs_at(features, targets, samples)
    stored = TruncatedTeacher(*truncate(reference.log_probs(features), targets, members[0].config.vocab_size))
    torch.testing.assert_close(stored.target, live_target, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(stored.at(samples, members[0].config.vocab_size, targets), live_samples,
                               atol=1e-5, rtol=1e-5)


def test_distilling_from_stored_teachers_at_full_k_trains_the_same_student_and_reuses_the_store(
        demo_corpus, teachers, tmp_path):
    def config(name: str, k: int, epochs: int = 1):
        return tiny_config(demo_corpus, tmp_path / name, embedding_dim=16, hidden_dim=16, loss="tr",
                           teacher_paths=tuple(str(t) for t in teachers), teacher_top_k=k, max_epochs=epochs,
                           dropout=0.0)

    vocab = len(load_artifact(teachers[0]).vocab)
    live = train(config("live", 0), progress=False).history
    stored = train(config("stored", vocab), progress=False).history
    # Equal in exact arithmetic, not in float32: the stored table and the live teachers are two
    # float paths, and an epoch of SGD steps carries their rounding differences along (on an AMD
    # EPYC the epoch's loss differed by 2e-4). The losses' definitions are compared exactly, on one
    # forward pass, in test_the_stored_teacher_loss_from_logits_equals_the_loss_from_log_probabilities;
    # here, after a whole epoch, the same student to within 1 %.
    assert stored[0]["train_loss_per_token"] == pytest.approx(live[0]["train_loss_per_token"], rel=1e-2)
    assert stored[0]["dev_normalized_ppl"] == pytest.approx(live[0]["dev_normalized_ppl"], rel=1e-2)
    store = tmp_path / "stored" / f"teacher-top{vocab}"
    assert json.loads((store / "meta.json").read_text())["k"] == vocab
    before = (store / "indices.npy").stat().st_mtime_ns
    train(config("stored", vocab, epochs=2), resume=True, progress=False)  # the second epoch reads the same store
    assert (store / "indices.npy").stat().st_mtime_ns == before
    assert not store.with_name(store.name + ".partial").exists()
    half = train(config("half", vocab // 2), progress=False).history  # truncated: close to the exact teacher
    assert half[0]["dev_normalized_ppl"] == pytest.approx(live[0]["dev_normalized_ppl"], rel=0.1)


def test_compare_puts_teachers_and_a_student_side_by_side(demo_corpus, teachers, tmp_path, capsys):
    code, err = _distill(demo_corpus, teachers, tmp_path / "student", "nce-tr", capsys)
    assert code == 0, err
    student = tmp_path / "student" / "artifact"
    assert train_cli(["compare", *map(str, teachers), str(student), "--text", str(demo_corpus["test"]),
                      "--json", str(tmp_path / "rows.json")]) == 0
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [r["output_kind"] for r in rows] == ["softmax", "mos", "self_normalized"]
    assert [r["self_normalized_ppl"] is None for r in rows] == [True, True, False]
    assert all(r["words_per_second"] > 0 and r["normalized_ppl"] > 1 for r in rows)
    assert rows[2]["parameters"] < rows[0]["parameters"]
    assert "student/artifact" in capsys.readouterr().out


@pytest.mark.parametrize("tail", ["prior", "student"])
@pytest.mark.parametrize("kind", ["kl", "interp", "tr"])
@pytest.mark.parametrize("k", [4, 11])
def test_the_stored_teacher_loss_from_logits_equals_the_loss_from_log_probabilities(kind, k, tail):
    from training.losses import truncated_distillation_loss
    from training.teacher_cache import TruncatedTeacher, truncate

    g = torch.Generator().manual_seed(5)
    rows, bias = torch.randn(11, 6, generator=g, dtype=torch.float64), torch.randn(11, generator=g, dtype=torch.float64)
    features = torch.randn(7, 6, generator=g, dtype=torch.float64, requires_grad=True)
    _, teacher, targets, mask = _distributions()
    prior = torch.softmax(torch.randn(11, generator=g, dtype=torch.float64), -1)
    stored = TruncatedTeacher(*truncate(teacher, targets, k), prior, tail=tail)

    def general():
        return distillation_loss(torch.log_softmax(features @ rows.T + bias, -1), stored, targets, mask, kind, 0.3, 0.2)

    def from_logits():
        return truncated_distillation_loss(features @ rows.T + bias, stored, targets, mask, kind, 0.3, 0.2)

    expected, = torch.autograd.grad(general(), features)
    got, = torch.autograd.grad(from_logits(), features)
    torch.testing.assert_close(from_logits(), general())
    torch.testing.assert_close(got, expected)


def test_two_process_distillation_stores_one_teacher_shard_per_rank(demo_corpus, teachers, tmp_path):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    run = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
               "-m", "training.cli", "distill", *sum((["--teacher", str(t)] for t in teachers), []), "--loss", "tr",
               "--train", str(demo_corpus["train"]), "--dev", str(demo_corpus["dev"]), "--out", str(run),
               "--embedding-dim", "16", "--hidden-dim", "16", "--num-layers", "1", "--batch-size", "4",
               "--teacher-top-k", "16", "--max-epochs", "1", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    shards = sorted(p.name for p in (run / "teacher-top16").iterdir() if p.is_dir())  # beside their lock files
    assert shards == ["rank0-of-2", "rank1-of-2"]
    for shard in shards:
        meta = json.loads((run / "teacher-top16" / shard / "meta.json").read_text())
        assert meta["world_size"] == 2 and meta["k"] == 16
    assert load_artifact(run / "artifact").provenance["distillation"]["teacher_top_k"] == 16


def test_runs_sharing_a_teacher_store_build_it_once_and_a_new_text_gets_its_own(demo_corpus, teachers, tmp_path):
    store = tmp_path / "store"

    def config(name: str, loss: str, **values):
        return tiny_config(demo_corpus, tmp_path / name, embedding_dim=16, hidden_dim=16, loss=loss,
                           teacher_paths=tuple(str(t) for t in teachers), teacher_top_k=8, max_epochs=1,
                           dropout=0.0, teacher_store=str(store), **values)

    train(config("tr", "tr"), progress=False)
    built = sorted(p for p in store.iterdir() if p.is_dir())
    assert [p.name.startswith("teacher-top8-") for p in built] == [True]
    before = (built[0] / "indices.npy").stat().st_mtime_ns
    train(config("kl", "kl"), progress=False)  # another student, the same teachers and layout: read, not built
    assert sorted(p for p in store.iterdir() if p.is_dir()) == built
    assert (built[0] / "indices.npy").stat().st_mtime_ns == before
    assert not (tmp_path / "tr" / "teacher-top8").exists() and not (tmp_path / "kl" / "teacher-top8").exists()

    other_text = tmp_path / "other.txt"  # the same number of words in another order: other positions
    words = demo_corpus["train"].read_text().split("\n")
    other_text.write_text("\n".join(reversed(words)))
    train(config("tr-other", "tr", train_path=str(other_text)), progress=False)
    assert len([p for p in store.iterdir() if p.is_dir()]) == 2


@pytest.mark.parametrize("damage", ["cut short", "removed", "another shape"])
def test_a_teacher_store_damaged_after_it_was_built_is_built_again_not_read(demo_corpus, teachers, tmp_path, damage):
    import numpy as np

    store = tmp_path / "store"

    def config(name: str, loss: str):
        return tiny_config(demo_corpus, tmp_path / name, embedding_dim=16, hidden_dim=16, loss=loss,
                           teacher_paths=tuple(str(t) for t in teachers), teacher_top_k=8, max_epochs=1,
                           dropout=0.0, teacher_store=str(store))

    first = train(config("tr", "tr"), progress=False).history
    (built,) = [p for p in store.iterdir() if p.is_dir()]
    whole = {name: np.load(built / f"{name}.npy") for name in ("indices", "log_probs", "target", "rest")}
    victim = built / "log_probs.npy"
    if damage == "cut short":
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    elif damage == "removed":
        victim.unlink()
    else:
        np.save(victim, whole["log_probs"][:, :4].copy())
    again = train(config("tr-again", "tr"), progress=False).history  # the same student: it must see the same teachers
    assert again[0]["train_loss_per_token"] == pytest.approx(first[0]["train_loss_per_token"], rel=1e-5)
    assert [p for p in store.iterdir() if p.is_dir()] == [built]
    for name, array in whole.items():
        np.testing.assert_array_equal(np.load(built / f"{name}.npy"), array)


def test_two_runs_started_together_on_one_teacher_store_build_it_once(demo_corpus, teachers, tmp_path):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}

    def start(name: str, loss: str):
        command = [sys.executable, "-m", "training.cli", "distill", *sum((["--teacher", str(t)] for t in teachers), []),
                   "--loss", loss, "--train", str(demo_corpus["train"]), "--dev", str(demo_corpus["dev"]),
                   "--out", str(tmp_path / name), "--embedding-dim", "16", "--hidden-dim", "16", "--num-layers", "1",
                   "--batch-size", "4", "--teacher-top-k", "16", "--teacher-store", str(tmp_path / "store"),
                   "--max-epochs", "1"]
        return subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    runs = [start("tr", "tr"), start("kl", "kl")]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    said = sorted("computed" if "top 16 computed" in out else "reused" if "top 16 reused" in out else out
                  for out in outputs)
    assert said == ["computed", "reused"]
    assert len([p for p in (tmp_path / "store").iterdir() if p.is_dir()]) == 1


def test_a_teacher_store_that_cannot_be_a_directory_or_has_nothing_to_store_is_refused(
        demo_corpus, teachers, tmp_path, capsys):
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a directory\n")
    code, err = _distill(demo_corpus, teachers, tmp_path / "run", "tr", capsys, "--teacher-top-k", "8",
                         "--teacher-store", str(in_the_way / "store"))
    assert code == 2 and "a-file is a file, not a directory" in err
    assert not (tmp_path / "run").exists()  # refused before any work
    code, err = _distill(demo_corpus, teachers, tmp_path / "run", "tr", capsys, "--teacher-top-k", "0",
                         "--teacher-store", str(tmp_path / "s"))  # the live teachers: nothing to store
    assert code == 2 and "--teacher-top-k > 0" in err


def test_a_teacher_store_larger_than_the_free_disk_is_refused_before_the_teachers_pass(
        demo_corpus, teachers, tmp_path, capsys, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))  # 1,000 bytes free
    code, err = _distill(demo_corpus, teachers, tmp_path / "run", "tr", capsys, "--teacher-top-k", "8")
    assert code == 2 and "GiB are free there" in err and "--teacher-top-k" in err
    assert not any((tmp_path / "run").glob("teacher-top8*/indices.npy"))


def test_the_fused_log_sum_exp_and_gather_has_autograds_value_and_gradient_with_repeated_words():
    from training.losses import log_sum_exp_and_picked

    g = torch.Generator().manual_seed(5)
    logits = (torch.randn(6, 30, generator=g, dtype=torch.float64) * 4).requires_grad_()
    words = torch.randint(0, 30, (6, 9), generator=g)
    words[:, -1] = words[:, 0]  # a target among the k words: the same word picked twice in a row
    lse, picked = log_sum_exp_and_picked(logits, words)
    torch.testing.assert_close(lse, torch.logsumexp(logits, -1))
    torch.testing.assert_close(picked, logits.gather(1, words))
    weights_lse, weights_picked = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, 9, generator=g,
                                                                                                 dtype=torch.float64)
    fused = torch.autograd.grad((lse * weights_lse).sum() + (picked * weights_picked).sum(), logits)[0]
    plain = torch.autograd.grad((torch.logsumexp(logits, -1) * weights_lse).sum()
                                + (logits.gather(1, words) * weights_picked).sum(), logits)[0]
    torch.testing.assert_close(fused, plain)
    assert torch.autograd.gradcheck(lambda o: log_sum_exp_and_picked(o, words), (logits,))


@pytest.mark.parametrize("k", [8, 100])
@pytest.mark.parametrize("kind", ["tr", "interp"])
# o at the k words: gathered from the logits in one function with the log-sum-exp (the default), as two autograd ops,
# or from the words' output rows
@pytest.mark.parametrize("way", ["gather", "autograd", "rows"])
@pytest.mark.parametrize("tail", ["prior", "student"])
def test_the_trainers_stored_teacher_step_equals_the_loss_on_the_students_log_probabilities(k, kind, way, tail):
    from bench.objective_variants import VARIANTS
    from training.teacher_cache import TruncatedTeacher, truncate

    V, D = 200, 4
    student = _model("softmax", V=V, D=D, seed=3)
    teachers = FrozenReference([_model("softmax", V=V, D=D, seed=1), _model("mos", experts=2, V=V, D=D, seed=2)])
    objective = VARIANTS[way](student, kind, bos_id=0, sparse_grads=False, reference=teachers, alpha=0.3,
                              trust_a=0.2)
    g = torch.Generator().manual_seed(4)
    inputs, targets = torch.randint(1, V, (3, 5), generator=g), torch.randint(1, V, (3, 5), generator=g)
    prior = torch.softmax(torch.randn(V, generator=g), -1)
    with torch.no_grad():
        stored = TruncatedTeacher(*truncate(teachers.log_probs(teachers.features(inputs, None)[0]),
                                            targets.reshape(-1), k), prior, tail=tail)
    loss, _ = objective(inputs, targets, None, None, stored)
    got = torch.autograd.grad(loss, list(student.parameters()), allow_unused=True)
    features, _ = student.features(inputs, None)
    log_probs = torch.log_softmax(student.logits(features.reshape(-1, D)), -1)
    expected_loss = distillation_loss(log_probs, stored, targets.reshape(-1), torch.ones(15, dtype=torch.bool), kind,
                                      0.3, 0.2)
    expected = torch.autograd.grad(expected_loss, list(student.parameters()), allow_unused=True)
    torch.testing.assert_close(loss, expected_loss, atol=1e-4, rtol=1e-4)
    for a, b in zip(got, expected, strict=True):
        if a is None or b is None:
            assert a is None and b is None
        else:
            torch.testing.assert_close(a.to_dense() if a.is_sparse else a, b.to_dense() if b.is_sparse else b,
                                       atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("kind", ["kl", "interp", "tr"])
def test_a_full_k_store_gives_the_live_teachers_loss_on_one_forward_pass(demo_corpus, teachers, kind):
    from training.losses import distillation_loss
    from training.teacher_cache import TruncatedTeacher, truncate

    members = [load_artifact(t).model for t in teachers]
    reference = FrozenReference(members)
    vocab = members[0].config.vocab_size
    g = torch.Generator().manual_seed(3)
    inputs = torch.randint(0, vocab, (4, 6), generator=g)
    targets = torch.randint(0, vocab, (24,), generator=g)
    mask = torch.ones(24, dtype=torch.bool)
    student = torch.log_softmax(torch.randn(24, vocab, generator=g), dim=-1)
    features, _ = reference.features(inputs, None)
    live = reference.log_probs(features)
    stored = TruncatedTeacher(*truncate(live, targets, vocab))
    # one forward pass, float32 sums over V of about 130 terms: rounding of order 1e-6 relative
    torch.testing.assert_close(distillation_loss(student, stored, targets, mask, kind),
                               distillation_loss(student, live, targets, mask, kind), rtol=1e-5, atol=0.0)


def test_the_stored_teachers_tail_prior_leaves_out_the_start_symbol(teachers, tmp_path):
    """<s> is never a target: a tail shaped by a prior that counts it gave <s> 40-170x the
    probability the real teacher does on the demo; the prior is the targets' add-one unigram."""
    from training.batches import BpttBatches
    from training.teacher_cache import TeacherTopK

    teacher = load_artifact(teachers[0])
    vocab = teacher.vocab
    sentences = [[vocab.bos_id, 5, 6, 7, vocab.eos_id], [vocab.bos_id, 5, 8, vocab.eos_id]] * 20
    ids = np.array([i for s in sentences for i in s], dtype=np.int64)
    store = TeacherTopK(FrozenReference([teacher.model]), BpttBatches(ids, 4, 5), 3, tmp_path / "store",
                        {"test": True}, bos_id=vocab.bos_id)
    prior = store.prior.double().numpy()
    assert prior[vocab.bos_id] == 0.0 and prior.sum() == pytest.approx(1.0, rel=1e-6)
    targets = np.bincount(ids[ids != vocab.bos_id], minlength=len(vocab)) + 1.0
    targets[vocab.bos_id] = 0.0
    np.testing.assert_allclose(prior, targets / targets.sum(), rtol=1e-6)
    assert json.loads((tmp_path / "store" / "meta.json").read_text())["format"] == 2


def test_distill_prints_the_teachers_dev_perplexity_beside_the_students(demo_corpus, teachers, tmp_path, capsys):
    from training.compare import teachers_dev_perplexity

    code = train_cli(["distill", *sum((["--teacher", str(t)] for t in teachers), []), "--loss", "tr",
                      "--train", str(demo_corpus["train"]), "--dev", str(demo_corpus["dev"]), "--out",
                      str(tmp_path / "s"), "--embedding-dim", "8", "--hidden-dim", "8", "--num-layers", "1",
                      "--batch-size", "8", "--bptt", "10", "--max-epochs", "1", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    expected = teachers_dev_perplexity([str(t) for t in teachers], str(demo_corpus["dev"]))
    assert set(expected) == {*map(str, teachers), "ensemble"}
    for name, ppl in expected.items():
        label = "teachers, ensemble" if name == "ensemble" else f"teacher {name}"
        assert f"{label}: dev perplexity {ppl:.2f}" in out
    student = float(out.split("dev perplexity ")[1].split()[0])
    # the ensemble is what the student learns from: no better than its best member's log-loss bound
    assert expected["ensemble"] <= max(v for k, v in expected.items() if k != "ensemble") + 1e-9
    if min(expected.values()) >= 0.95 * student:
        assert "not clearly better than this student" in out
    else:
        assert "not clearly better" not in out


def _sampled(teacher, targets, k, samples, seed):
    from training.teacher_cache import TruncatedTeacher, truncate_and_sample

    parts = truncate_and_sample(teacher, targets, k, samples, torch.Generator().manual_seed(seed))
    return TruncatedTeacher(*parts, exact_columns=k)


@pytest.mark.parametrize("kind", ["kl", "interp", "tr"])
def test_a_store_with_samples_is_unbiased_for_the_exact_teachers_loss(kind):
    """Averaged over draws, the loss from the top k plus words drawn from the tail equals the
    loss from the full teachers; the top-k store's unigram-shaped tail does not."""
    student, teacher, targets, mask = _distributions(N=6, V=30, seed=4)
    student = student.detach()
    exact = float(distillation_loss(student, teacher, targets, mask, kind, alpha=0.3, trust=0.2))
    draws = [float(distillation_loss(student, _sampled(teacher, targets, 3, 4, seed), targets, mask, kind,
                                     alpha=0.3, trust=0.2)) for seed in range(3000)]
    mean, spread = float(np.mean(draws)), float(np.std(draws)) / math.sqrt(len(draws))
    assert abs(mean - exact) < 4 * spread + 1e-9  # a 4-sigma band around the Monte Carlo mean
    assert spread > 0  # the draws did vary
    top_k = float(distillation_loss(student, _truncated(teacher, targets, 7), targets, mask, kind, alpha=0.3,
                                    trust=0.2))
    assert abs(top_k - exact) > 4 * spread  # the truncated store's bias, at more exact words than the draws use


def test_a_store_with_samples_keeps_the_top_words_the_target_and_the_whole_mass():
    _, teacher, targets, _ = _distributions(N=5, V=40, seed=3)
    stored = _sampled(teacher, targets, 6, 10, seed=0)
    assert stored.indices.shape == (5, 16) and stored.sampled
    top = teacher.topk(6, dim=1).indices.sort(dim=1).values
    assert torch.equal(stored.indices[:, :6], top)
    torch.testing.assert_close(stored.log_probs[:, :6], teacher.gather(1, top))
    torch.testing.assert_close(stored.log_probs.exp().sum(1), torch.ones(5, dtype=torch.float64))
    assert not bool((stored.indices[:, 6:, None] == top[:, None, :]).any())  # drawn only outside the top
    torch.testing.assert_close(stored.target, teacher.gather(1, targets[:, None]).squeeze(1))
    # the noise-word lookup reads the exact top words and y, the tail's share elsewhere
    looked_up = stored.at(torch.arange(40), 40, targets)
    torch.testing.assert_close(looked_up.gather(1, top), teacher.gather(1, top))
    torch.testing.assert_close(looked_up.gather(1, targets[:, None]), teacher.gather(1, targets[:, None]))


def test_distilling_from_a_store_with_samples_trains_and_keeps_its_draw(demo_corpus, teachers, tmp_path):
    def config(epochs: int):
        return tiny_config(demo_corpus, tmp_path / "run", embedding_dim=16, hidden_dim=16, loss="tr",
                           teacher_paths=tuple(str(t) for t in teachers), teacher_top_k=8, teacher_samples=8,
                           max_epochs=epochs, dropout=0.0)

    vocab = len(load_artifact(teachers[0]).vocab)
    first = train(config(1), progress=False).history
    store = tmp_path / "run" / "teacher-top8-samples8-seed1"
    meta = json.loads((store / "meta.json").read_text())
    assert (meta["k"], meta["samples"], meta["sample_seed"]) == (8, 8, 1)
    assert np.load(store / "indices.npy").shape[1] == 16
    before = (store / "indices.npy").stat().st_mtime_ns
    second = train(config(2), resume=True, progress=False).history
    assert (store / "indices.npy").stat().st_mtime_ns == before  # the same draw in every epoch
    assert second[-1]["dev_normalized_ppl"] < first[0]["dev_normalized_ppl"] < vocab
    with pytest.raises(ConfigError, match="--teacher-samples adds drawn words"):
        tiny_config(demo_corpus, tmp_path / "x", loss="tr", teacher_paths=tuple(map(str, teachers)),
                    teacher_top_k=0, teacher_samples=8)


@pytest.mark.parametrize("loss, store", [("kl", (128, 128)), ("interp", (128, 128)), ("tr", (128, 128)),
                                         ("nce-tr", (256, 0))])  # nce-tr reads no drawn words
def test_a_distilled_student_reads_a_store_by_default(demo_corpus, tmp_path, loss, store):
    config = tiny_config(demo_corpus, tmp_path / "run", loss=loss, teacher_paths=("t/artifact",))
    assert (config.teacher_top_k, config.teacher_samples) == store


def test_the_default_store_gives_way_to_what_is_asked(demo_corpus, tmp_path):
    def store(**values) -> tuple[int, int]:
        config = tiny_config(demo_corpus, tmp_path / "run", **values)
        return config.teacher_top_k, config.teacher_samples

    teachers = {"teacher_paths": ("t/artifact",)}
    assert store(loss="ce", **teachers) == (0, 0)  # no teacher term: nothing to store
    assert store(loss="nce") == (0, 0) and store(loss="ce") == (0, 0)
    assert store(loss="tr", teacher_top_k=0, **teachers) == (0, 0)  # the live teachers
    assert store(loss="tr", teacher_top_k=256, **teachers) == (256, 0)  # the top-k store, for comparison
    assert store(loss="kl", teacher_top_k=64, teacher_samples=32, **teachers) == (64, 32)
    assert store(loss="tr", teacher_samples=16, **teachers) == (128, 16)
    assert store(loss="tr", teacher_tail="student", **teachers) == (128, 0)  # that tail takes no samples


def test_distill_help_states_the_default_store(capsys):
    with pytest.raises(SystemExit):
        train_cli(["distill", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default: 128 for kl, interp and tr, with --teacher-samples 128; 256 for nce-tr" in text
