"""The NCE+KLD loss (paper 1, Eq. 15-21): its limits, its estimator, and that the reference is
only ever read."""

import math

import pytest
import torch
import torch.nn.functional as F

from training.losses import kld_importance_weights, nce_kld_loss, nce_loss


def _inputs(N=6, S=9, V=12, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, V, (N,), generator=g)
    samples = torch.randint(0, V, (S,), generator=g)
    samples[:3] = targets[0]  # the first position's target drawn three times
    samples[3] = targets[-1]
    log_noise = torch.log_softmax(torch.randn(V, generator=g, dtype=dtype), -1)  # ln p_n (V,)
    ref_logits = torch.randn(N, V, generator=g, dtype=dtype)
    ref_log_probs = torch.log_softmax(ref_logits, -1) + 0.3  # a reference that is not quite normalized
    # one score matrix, as a model gives: a sample w = y has the score of the target y
    scores = torch.randn(N, V, generator=g, dtype=dtype, requires_grad=True)  # s(w|h)  (N, V)
    return {
        "scores": scores,
        "target_scores": scores.gather(1, targets[:, None])[:, 0],
        "sample_scores": scores[:, samples],
        "target_log_noise": log_noise[targets], "sample_log_noise": log_noise[samples],
        "reference_target_log_probs": ref_log_probs.gather(1, targets[:, None])[:, 0],
        "reference_sample_log_probs": ref_log_probs[:, samples],
        "target_count_in_samples": (samples[None, :] == targets[:, None]).sum(-1),
        "mask": torch.ones(N, dtype=torch.bool),
    }, targets, samples


def _reference_loss(x, targets, samples, gamma):
    """Eq. 21 written term by term with an explicit mask, in the paper's symbols."""
    S = len(samples)
    delta_y = x["target_scores"] - math.log(S) - x["target_log_noise"]
    delta_w = x["sample_scores"] - math.log(S) - x["sample_log_noise"]
    gamma = torch.as_tensor(gamma, dtype=delta_y.dtype).expand_as(delta_y)
    p_gamma_y = gamma + (1 - gamma) * x["reference_target_log_probs"].exp()
    not_y = samples[None, :] != targets[:, None]  # (N, S)
    a = (1 - gamma)[:, None] * x["reference_sample_log_probs"].exp() / x["sample_log_noise"].exp()  # Eq. 19
    a = torch.where(not_y, a, torch.zeros_like(a))
    s_prime = not_y.sum(-1).clamp_min(1)
    z = p_gamma_y + a.sum(-1) / s_prime  # Eq. 20
    loss = -(p_gamma_y * F.logsigmoid(delta_y)
             + (a * F.logsigmoid(delta_w)).sum(-1) / (s_prime * z)
             + F.logsigmoid(-delta_w).sum(-1))
    return loss.sum()


def _loss_and_grads(fn, x):
    loss = fn()
    (grad,) = torch.autograd.grad(loss, [x["scores"]], retain_graph=True)
    return loss.detach(), grad


def _kld(x, gamma):
    return nce_kld_loss(**{k: v for k, v in x.items() if k != "scores"}, gamma=gamma)


def test_gamma_one_is_exactly_the_nce_loss_and_its_gradients():
    x, _, _ = _inputs()
    nce = _loss_and_grads(lambda: nce_loss(x["target_scores"], x["sample_scores"], x["target_log_noise"],
                                           x["sample_log_noise"], x["mask"]), x)
    for gamma in (1.0, torch.ones(6, dtype=torch.float64)):
        kld = _loss_and_grads(lambda g=gamma: _kld(x, g), x)
        torch.testing.assert_close(kld[0], nce[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(kld[1], nce[1], rtol=1e-12, atol=1e-12)


def test_loss_and_gradients_equal_eq_21_written_with_an_explicit_mask():
    x, targets, samples = _inputs()
    per_position_gamma = torch.tensor([0.0, 0.25, 0.5, 0.75, 0.9, 1.0], dtype=torch.float64)
    for gamma in (0.0, 0.5, 0.9, per_position_gamma):
        ours = _loss_and_grads(lambda g=gamma: _kld(x, g), x)
        paper = _loss_and_grads(lambda g=gamma: _reference_loss(x, targets, samples, g), x)
        torch.testing.assert_close(ours[0], paper[0], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(ours[1], paper[1], rtol=1e-10, atol=1e-10)


def test_a_sample_made_only_of_the_target_leaves_just_the_target_term():
    x, targets, _ = _inputs(N=1, S=4)
    x["target_count_in_samples"] = torch.tensor([4])
    x["sample_log_noise"] = x["target_log_noise"].expand(4)
    x["sample_scores"] = x["target_scores"][:, None].expand(1, 4)
    x["reference_sample_log_probs"] = x["reference_target_log_probs"][:, None].expand(1, 4).clone()
    weights = kld_importance_weights(x["target_log_noise"], x["sample_log_noise"], x["reference_target_log_probs"],
                                     x["reference_sample_log_probs"], x["target_count_in_samples"], 0.5)
    p_gamma_y = 0.5 + 0.5 * x["reference_target_log_probs"].exp()
    torch.testing.assert_close(weights.z, p_gamma_y)  # S' = 0: no partial expectation
    # the target's weight after removing its four copies from the sample sum
    torch.testing.assert_close(weights.target + 4 * weights.samples[:, 0], p_gamma_y)
    assert torch.isfinite(_kld(x, 0.5))


def _monte_carlo(noise_probs, ref_probs, target, gamma, num_samples, f, seed=0):
    """One position: the IS partial expectation (1/(S' Z)) sum_{w != y} a(w) f(w) and Z(h,S)."""
    g = torch.Generator().manual_seed(seed)
    samples = torch.multinomial(noise_probs, num_samples, replacement=True, generator=g)
    log_noise, log_ref = noise_probs.log(), ref_probs.log()
    weights = kld_importance_weights(
        log_noise[target].reshape(1), log_noise[samples], log_ref[target].reshape(1),
        log_ref[samples].reshape(1, -1), (samples == target).sum().reshape(1), gamma)
    not_y = samples != target
    estimate = (weights.samples[0] * f[samples] * not_y).sum()
    return float(estimate), float(weights.z[0])


def test_importance_sampling_approaches_the_exact_sum_over_a_tiny_vocabulary():
    V, target, gamma = 8, 2, 0.25
    noise = torch.tensor([0.3, 0.2, 1e-4, 0.15, 0.1, 0.1, 0.1, 0.0499], dtype=torch.float64)  # p_n(y) ~ 0
    f = torch.linspace(-3.0, 1.0, V, dtype=torch.float64)  # any per-word function, e.g. log sig(delta)
    for mass in (1.0, 1.7):  # a normalized reference, and one whose total mass is 1.7
        ref = torch.softmax(torch.linspace(1.0, -1.0, V, dtype=torch.float64), 0) * mass
        p_gamma = (1 - gamma) * ref
        p_gamma[target] += gamma
        exact_z = float(p_gamma.sum())  # the total mass of p_gamma
        exact = float((p_gamma * f).sum() - p_gamma[target] * f[target]) / exact_z  # Eq. 17, normalized by Z
        estimate, z = _monte_carlo(noise, ref, target, gamma, 400_000, f)
        assert abs(z - exact_z) < 5e-3 * exact_z
        assert abs(estimate - exact) < 5e-3 * abs(exact)


def test_s_prime_as_the_paper_writes_it_biases_by_one_over_one_minus_pn_y():
    # The documented choice: with a frequent target the estimate converges to this limit
    V, target, gamma = 6, 0, 0.5
    noise = torch.tensor([0.4, 0.2, 0.1, 0.1, 0.1, 0.1], dtype=torch.float64)
    ref = torch.softmax(torch.arange(V, dtype=torch.float64) * 0.3, 0)
    f = torch.ones(V, dtype=torch.float64)
    rest = float((1 - gamma) * (ref.sum() - ref[target]))  # sum_{w != y} p_gamma(w)
    p_gamma_y = gamma + (1 - gamma) * float(ref[target])
    limit_z = p_gamma_y + rest / (1 - 0.4)
    estimate, z = _monte_carlo(noise, ref, target, gamma, 400_000, f)
    assert abs(z - limit_z) < 5e-3
    assert abs(estimate - rest / (1 - 0.4) / limit_z) < 5e-3
    assert abs(z - 1.0) > 0.05  # the bias is real, not noise


def test_masked_positions_contribute_nothing():
    x, _, _ = _inputs()
    full = float(_kld(x, 0.5).detach())
    each = []
    for i in range(6):  # the loss of each position alone
        x["mask"] = torch.arange(6) == i
        each.append(float(_kld(x, 0.5).detach()))
    assert full == pytest.approx(sum(each), rel=1e-9)  # the loss is the sum over positions
    x["mask"] = torch.tensor([True, True, True, True, True, False])
    assert float(_kld(x, 0.5).detach()) == pytest.approx(sum(each[:5]), rel=1e-9)  # position 5 is left out exactly
    x["mask"] = torch.zeros(6, dtype=torch.bool)
    assert float(_kld(x, 0.5).detach()) == 0.0


def test_a_masked_target_with_zero_noise_probability_leaves_every_gradient_finite():
    # <s> is never a noise word (p_n = 0, ln p_n = -inf) and its positions are masked
    x, _, _ = _inputs()
    x["target_log_noise"] = x["target_log_noise"].clone()
    x["target_log_noise"][2] = -math.inf
    x["mask"] = torch.tensor([True, True, False, True, True, True])
    loss, grad = _loss_and_grads(lambda: _kld(x, 0.5), x)
    assert math.isfinite(float(loss)) and torch.isfinite(grad).all()
    assert float(grad[2].abs().sum()) == 0.0  # the masked position gets no gradient
