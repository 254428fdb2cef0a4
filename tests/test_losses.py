import math

import numpy as np
import torch
import torch.nn.functional as F

from rescorer.model import LstmLanguageModel, ModelConfig
from training.losses import cross_entropy_loss, nce_loss
from training.noise import UnigramNoise
from training.objective import TrainingObjective


def test_nce_loss_matches_the_probability_form_of_eq_10_to_12():
    torch.manual_seed(0)
    N, S = 5, 7
    target_scores, sample_scores = torch.randn(N), torch.randn(N, S)
    log_pn_target, log_pn_samples = torch.log(torch.rand(N)), torch.log(torch.rand(S))
    loss = nce_loss(target_scores, sample_scores, log_pn_target, log_pn_samples, torch.ones(N, dtype=torch.bool))
    nu = S
    p_model_y, p_model_w = target_scores.double().exp(), sample_scores.double().exp()
    pn_y, pn_w = log_pn_target.double().exp(), log_pn_samples.double().exp()
    p_c1 = p_model_y / (p_model_y + nu * pn_y)  # Eq. 10
    p_c0 = nu * pn_w / (p_model_w + nu * pn_w)  # Eq. 11
    expected = -(torch.log(p_c1) + torch.log(p_c0).sum(-1)).sum()  # Eq. 12, summed over positions
    assert math.isclose(float(loss), float(expected), rel_tol=1e-5)


def test_masked_positions_contribute_nothing_to_either_loss():
    torch.manual_seed(0)
    scores, samples = torch.randn(4), torch.randn(4, 3)
    mask = torch.tensor([True, False, True, False])
    full = nce_loss(scores, samples, torch.zeros(4), torch.zeros(3), mask)
    kept = nce_loss(scores[mask], samples[mask], torch.zeros(2), torch.zeros(3), torch.ones(2, dtype=torch.bool))
    assert torch.allclose(full, kept)
    logits, targets = torch.randn(4, 6), torch.tensor([1, 0, 2, 0])
    assert torch.allclose(cross_entropy_loss(logits, targets, ignore_id=0),
                          F.cross_entropy(logits[[0, 2]], targets[[0, 2]], reduction="sum"))


def test_the_trainers_cross_entropy_has_the_value_and_gradient_of_f_cross_entropy():
    from bench.objective_variants import log_softmax_cross_entropy_loss

    g = torch.Generator().manual_seed(7)
    targets = torch.randint(0, 40, (30,), generator=g)
    targets[::4] = 0  # ignored positions
    for dtype in (torch.float32, torch.bfloat16):
        logits = (torch.randn(30, 40, generator=g) * 5).to(dtype).requires_grad_()
        ours = cross_entropy_loss(logits, targets, ignore_id=0)
        (grad_ours,) = torch.autograd.grad(ours, logits)
        reference = F.cross_entropy(logits.float(), targets, ignore_index=0, reduction="sum")
        (grad_reference,) = torch.autograd.grad(reference, logits)
        assert ours.dtype == torch.float32
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(grad_ours.float(), grad_reference.float(), rtol=1e-4, atol=1e-5)
        assert torch.equal(grad_ours[targets == 0], torch.zeros_like(grad_ours[targets == 0]))
        torch.testing.assert_close(log_softmax_cross_entropy_loss(logits.float(), targets, 0), reference)


def _objective(loss: str, vocab_size: int = 50) -> TrainingObjective:
    torch.manual_seed(0)
    model = LstmLanguageModel(ModelConfig(vocab_size=vocab_size, embedding_dim=8, hidden_dim=8, num_layers=1,
                                          dropout=0.0, output_kind="self_normalized" if loss == "nce" else "softmax"))
    noise = UnigramNoise(np.arange(vocab_size) + 1.0, alpha=0.75) if loss == "nce" else None
    return TrainingObjective(model, loss, bos_id=0, noise=noise, sparse_grads=True)


def test_nce_never_computes_the_full_output_layer_and_touches_only_target_and_sample_rows():
    objective = _objective("nce")
    model = objective.model

    def forbidden(*args, **kwargs):
        raise AssertionError("NCE must not compute logits over the whole vocabulary")

    model.logits = forbidden
    inputs = torch.tensor([[0, 3, 4, 5]])
    targets = torch.tensor([[3, 4, 5, 1]])
    samples = torch.tensor([7, 9, 9, 11])
    loss, _ = objective(inputs, targets, None, samples)
    loss.backward()
    grad = model.output_embedding.weight.grad
    assert grad.is_sparse
    touched = set(grad.coalesce().indices()[0].tolist())
    assert touched <= {3, 4, 5, 1, 7, 9, 11}


def test_noise_distribution_is_unigram_to_the_power_alpha_and_never_samples_unseen_words():
    noise = UnigramNoise(np.array([0, 1, 16, 81]), alpha=0.75)
    expected = torch.tensor([0, 1, 8, 27]) / 36
    assert torch.allclose(noise.probs, expected.float())
    draws = noise.sample(2000, torch.Generator().manual_seed(0))
    assert (draws != 0).all()
