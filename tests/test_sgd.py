import math

import torch
import torch.nn.functional as F

from training.sgd import sgd_step


def _grads(sparse: bool):
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(10, 4))
    dense = torch.nn.Parameter(torch.randn(3))
    rows = torch.tensor([1, 3, 3])
    (F.embedding(rows, weight, sparse=sparse).sum() * 2 + (dense**2).sum()).backward()
    return weight, dense


def test_sparse_step_updates_touched_rows_like_the_dense_step_and_leaves_others_alone():
    wd = 0.1
    w_sparse, d_sparse = _grads(sparse=True)
    w_dense, d_dense = _grads(sparse=False)
    before = w_sparse.detach().clone()
    sgd_step([w_sparse, d_sparse], lr=0.5, clip_norm=1e9, weight_decay=wd)
    sgd_step([w_dense, d_dense], lr=0.5, clip_norm=1e9, weight_decay=0.0)
    untouched = [0, 2, 4, 5, 6, 7, 8, 9]
    assert torch.equal(w_sparse[untouched], before[untouched])  # lazy decay: untouched rows stay
    touched = [1, 3]
    expected = w_dense[touched] - 0.5 * wd * before[touched]
    assert torch.allclose(w_sparse[touched], expected, atol=1e-6)


def test_global_norm_is_clipped_across_sparse_and_dense_gradients():
    weight, dense = _grads(sparse=True)
    g_sparse = weight.grad.coalesce()._values().clone()
    g_dense = dense.grad.clone()
    norm = math.sqrt(float(g_sparse.pow(2).sum() + g_dense.pow(2).sum()))
    before = dense.detach().clone()
    returned = sgd_step([weight, dense], lr=1.0, clip_norm=1.0, weight_decay=0.0)
    assert math.isclose(returned, norm, rel_tol=1e-6)
    assert torch.allclose(before - dense.detach(), g_dense / norm, atol=1e-5)


def test_a_non_finite_gradient_leaves_the_weights_untouched():
    weight = torch.nn.Parameter(torch.ones(3))
    weight.grad = torch.tensor([1.0, float("nan"), 0.0])
    assert not math.isfinite(sgd_step([weight], lr=1.0, clip_norm=1.0, weight_decay=0.0))
    assert torch.equal(weight.detach(), torch.ones(3))
