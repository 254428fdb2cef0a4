"""Training losses. Each returns the loss summed over the valid positions it is given.

Conventions (docs/ARCHITECTURE.md, sections 2-3): scores are natural logs; s(w|h) = o(h)_w - log_z is the
self-normalized log-probability; masked positions (target `<s>`) contribute nothing.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from training.teacher_cache import TruncatedTeacher


def cross_entropy_loss(logits: torch.Tensor, targets: torch.Tensor, ignore_id: int) -> torch.Tensor:
    """Full-softmax cross-entropy: logits (N, V), targets (N,) -> summed loss (scalar), in fp32.

    lse(o) - o_y from `log_sum_exp_and_picked`: the value and gradient of F.cross_entropy
    (tested) without forming ln P over the vocabulary; bench/distill_throughput.py times both."""
    lse, picked = log_sum_exp_and_picked(logits.float(), targets.unsqueeze(1))
    per_position = lse - picked.squeeze(1)
    return torch.where(targets != ignore_id, per_position, torch.zeros_like(per_position)).sum()


def nce_loss(
    target_scores: torch.Tensor,
    sample_scores: torch.Tensor,
    target_log_noise: torch.Tensor,
    sample_log_noise: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """NCE, paper 1 Eq. 12 with Eq. 10-11 written in log space; summed over valid positions.

    target_scores    s(y|h)       (N,)
    sample_scores    s(w|h)       (N, S)  the same S noise words for every position
    target_log_noise ln p_n(y)    (N,)
    sample_log_noise ln p_n(w)    (S,)
    mask             valid        (N,)    bool

    With nu = S: delta(w,h) = s(w|h) - ln(nu p_n(w)), p(C=1|w,h) = sigmoid(delta) (Eq. 10),
    p(C=0|w,h) = sigmoid(-delta) (Eq. 11), and per position
    L = -[log sigmoid(delta(y,h)) + sum_{w in S} log sigmoid(-delta(w,h))].
    """
    log_nu = math.log(sample_scores.shape[-1])
    delta_target = target_scores - (log_nu + target_log_noise)  # (N,)
    delta_samples = sample_scores - (log_nu + sample_log_noise)  # (N, S)
    per_position = -(F.logsigmoid(delta_target) + F.logsigmoid(-delta_samples).sum(-1))  # (N,)
    return torch.where(mask, per_position, torch.zeros_like(per_position)).sum()


def nce_kld_loss(
    target_scores: torch.Tensor,
    sample_scores: torch.Tensor,
    target_log_noise: torch.Tensor,
    sample_log_noise: torch.Tensor,
    reference_target_log_probs: torch.Tensor,
    reference_sample_log_probs: torch.Tensor,
    target_count_in_samples: torch.Tensor,
    gamma: float | torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """NCE with KL-divergence regularization toward a frozen reference t, paper 1 Eq. 15-21.

    target_scores               s(y|h)          (N,)    the trained model (gradients flow here)
    sample_scores               s(w|h)          (N, S)  the same S noise words at every position
    target_log_noise            ln p_n(y)       (N,)
    sample_log_noise            ln p_n(w)       (S,)
    reference_target_log_probs  ln p_t(y|h)     (N,)    no gradient (the reference is frozen)
    reference_sample_log_probs  ln p_t(w|h)     (N, S)  no gradient
    target_count_in_samples     #{w in S: w=y}  (N,)
    gamma                       float or (N,)   weight of the data; 1 - gamma goes to the reference
    mask                        valid           (N,)    bool

    With p_gamma(w|h) = gamma 1[w=y] + (1-gamma) p_t(w|h) (Eq. 8), the noise sample is reused
    for the partial expectation over w != y by importance sampling (Eq. 17-20):
        a(w|h) = p_gamma(w|h) / p_n(w)                          (Eq. 19)
        S'     = S - #{w in S: w = y}
        Z(h,S) = p_gamma(y|h) + (1/S') sum_{w in S, w != y} a(w|h)   (Eq. 20)
        L = -[ p_gamma(y|h) log sig(delta(y,h))
               + 1/(S' Z(h,S)) sum_{w in S, w != y} a(w|h) log sig(delta(w,h))
               + sum_{w in S} log sig(-delta(w,h)) ]             (Eq. 21, with its sign and
                                                                  y_n for w in the first term)
    with delta(w,h) = s(w|h) - ln(S p_n(w)) as in NCE. The reference enters only through the
    constant weights p_gamma(y|h) and a(w|h)/(S' Z), so no gradient can reach it.

    Implementation (the bench holds this to >= 0.9x plain NCE's speed): log sig(-d) = log sig(d) - d
    folds the two sample terms into one log-sigmoid, sum_w (1 + c_w) log sig(d_w) - d_w, and the
    samples equal to y are removed through per-position corrections, count(y) * (...)(y), instead
    of an (N, S) mask. With gamma = 1 every weight vanishes and L is the NCE loss (Eq. 12).
    """
    # A masked target (<s>) has p_n = 0: its -inf would turn the weights into NaN, and a NaN
    # weight poisons the gradient even where torch.where discards the value.
    target_log_noise = torch.where(mask, target_log_noise, torch.zeros_like(target_log_noise))
    log_nu = math.log(sample_scores.shape[-1])
    delta_target = target_scores - (log_nu + target_log_noise)  # (N,)
    delta_samples = sample_scores - (log_nu + sample_log_noise)  # (N, S)
    weights = kld_importance_weights(
        target_log_noise, sample_log_noise, reference_target_log_probs, reference_sample_log_probs,
        target_count_in_samples, gamma,
    )
    # c(w) log sig(d) + log sig(-d) = (1 + c(w)) log sig(d) - d: one log-sigmoid over (N, S)
    sample_weights = weights.samples.add_(1.0)  # 1 + c(w), in place  (N, S)
    per_position = -(
        weights.target * F.logsigmoid(delta_target)
        + _WeightedSampleTerm.apply(delta_samples, sample_weights)
    )  # (N,)
    return torch.where(mask, per_position, torch.zeros_like(per_position)).sum()


class KldWeights(NamedTuple):
    target: torch.Tensor  # weight of log sig(delta(y,h)): p_gamma(y|h) - count(y) c(y)  (N,)
    samples: torch.Tensor  # c(w) = a(w|h) / (S' Z(h,S)) for every sample, y included  (N, S)
    z: torch.Tensor  # Z(h,S), Eq. 20  (N,)


@torch.no_grad()
def kld_importance_weights(
    target_log_noise: torch.Tensor,
    sample_log_noise: torch.Tensor,
    reference_target_log_probs: torch.Tensor,
    reference_sample_log_probs: torch.Tensor,
    target_count_in_samples: torch.Tensor,
    gamma: float | torch.Tensor,
) -> KldWeights:
    """The constant weights of Eq. 21 (shapes as in `nce_kld_loss`).

    The samples equal to y are not masked in (N, S): their weight c(y) is left in `samples`
    and subtracted count(y) times from the target's weight, which is the same sum
    (delta(w,h) of a sample w = y equals delta(y,h)). A choice the paper leaves open: S' counts
    the samples that are not y, exactly as Eq. 18 writes it, so (1/S') sum_{w != y} a(w|h)
    estimates sum_{w != y} p_gamma(w|h) / (1 - p_n(y)): the estimator is biased by that factor
    for words the noise draws often; it vanishes as p_n(y) -> 0 (tests/test_nce_kld.py pins both).
    """
    dtype = reference_sample_log_probs.dtype
    keep = 1.0 - gamma if isinstance(gamma, float) else (1.0 - gamma).to(dtype)  # 1 - gamma
    p_gamma_target = (1.0 - keep) + keep * reference_target_log_probs.exp()  # Eq. 8 at y  (N,)
    ratio = (reference_sample_log_probs - sample_log_noise).exp_()  # e(w) = p_t(w|h) / p_n(w)  (N, S)
    ratio_target = (reference_target_log_probs - target_log_noise).exp()  # e(y)  (N,)
    count = target_count_in_samples.to(dtype)  # (N,)
    valid = (ratio.shape[-1] - count).clamp_min(1.0)  # S'; 0 only if every sample is y
    partial = (ratio.sum(-1) - count * ratio_target).clamp_min(0.0)  # sum_{w in S, w != y} e(w)  (N,)
    z = p_gamma_target + keep * partial / valid  # Eq. 20, a(w|h) = (1 - gamma) e(w) for w != y
    scale = keep / (valid * z)  # (N,)
    samples = ratio.mul_(scale.unsqueeze(-1))  # c(w), in place: no second (N, S) buffer
    return KldWeights(p_gamma_target - count * scale * ratio_target, samples, z)



TRUST_FLOOR = 1e-6  # 1 - Q(y|c) is floored here: a teacher certain of y gives R = -a ln 1e-6, not inf


def distillation_loss(
    student_log_probs: torch.Tensor,
    teacher_log_probs: torch.Tensor | TruncatedTeacher,
    targets: torch.Tensor,
    mask: torch.Tensor,
    kind: str,
    alpha: float = 0.5,
    trust: float = 0.1,
) -> torch.Tensor:
    """Knowledge distillation, paper 2 Eq. 1-6, summed over valid positions.

    student_log_probs  ln P(x|c)  (N, V)  normalized (softmax or mixture of softmaxes)
    teacher_log_probs  ln Q(x|c)  (N, V)  normalized, no gradient (the teacher is frozen); or the
                       teacher truncated to its top k words (training.teacher_cache), whose KL
                       term spreads the remaining mass evenly and whose ln Q(y|c) is exact
    targets y (N,); mask (N,) bool
    kind: `kl`      L_KL = -sum_x Q(x|c) ln P(x|c)                          (Eq. 4)
          `interp`  alpha L_CE + (1 - alpha) L_KL, L_CE = -ln P(y|c)        (Eq. 1, 2)
          `tr`      R(y) L_CE + L_KL, R(y) = -a ln(1 - Q(y|c))              (Eq. 5, 6)
    R(y) is computed from the teacher alone and carries no gradient.
    """
    cross_entropy = -student_log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)  # (N,)
    if isinstance(teacher_log_probs, TruncatedTeacher):
        kl = teacher_log_probs.cross_entropy_to(student_log_probs, targets)  # (N,)
        teacher_target = teacher_log_probs.target
    else:
        teacher_log_probs = teacher_log_probs.detach()
        kl = -(teacher_log_probs.exp() * student_log_probs).sum(-1)  # (N,)
        teacher_target = teacher_log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)  # ln Q(y|c)
    return combine_distillation(cross_entropy, kl, teacher_target, mask, kind, alpha, trust)


def truncated_distillation_loss(
    logits: torch.Tensor, teacher: TruncatedTeacher, targets: torch.Tensor,
    mask: torch.Tensor, kind: str, alpha: float = 0.5, trust: float = 0.1,
    prior_logits: torch.Tensor | None = None, picked: torch.Tensor | None = None,
) -> torch.Tensor:
    """`distillation_loss` for a softmax student and a teacher stored as its top k, without
    forming ln P over the vocabulary: with ln P(x) = o_x - lse(o),
        L_CE = lse - o_y
        L_KL = -[sum_K Q_x (o_x - lse) + r / u(rest) (sum_x u_x o_x - lse - sum_K u_x (o_x - lse))]
    (training.teacher_cache: K the k words and y, the rest shaped like the prior u). Only lse reads the whole
    (N, V) logits (as cross-entropy training does); equal to `distillation_loss` on
    log_softmax(logits) (tested).

    logits (N, V) o; teacher: the stored top k at these positions; prior_logits (N,) sum_x u_x o_x
    where the caller has it more cheaply (from the output rows and the prior: O(N D)); picked
    (N, k + 1): o at the teacher's k words and at y where the caller formed them from those
    words' output rows (default: gathered from `logits` by `log_sum_exp_and_picked`, whose
    backward adds their gradient into the log-sum-exp's (N, V) one in place)."""
    if picked is None:
        lse, picked = log_sum_exp_and_picked(logits, torch.cat([teacher.indices, targets.unsqueeze(1)], dim=1))
    else:
        lse = torch.logsumexp(logits, dim=-1)  # (N,)
    at_top, at_target = picked[:, :-1], picked[:, -1]
    if prior_logits is None:  # sum_x u(x) o_x (the prior sums to 1, so sum_x u ln P = this - lse)
        prior_logits = logits @ teacher.prior_over(logits.shape[-1], logits)
    cross_entropy = lse - at_target
    kl = teacher.cross_entropy_from(at_top - lse.unsqueeze(1), at_target - lse, prior_logits - lse, targets,
                                    logits.shape[-1])
    return combine_distillation(cross_entropy, kl, teacher.target, mask, kind, alpha, trust)


def log_sum_exp_and_picked(logits: torch.Tensor, words: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """lse(o) per row and o at `words`: logits (N, V), words (N, m) -> (N,), (N, m), with the
    value and gradient of `logsumexp` and `gather` under autograd (tested) in one (N, V) gradient
    buffer: autograd would form the log-sum-exp's gradient, a zero (N, V) buffer for the gather's
    scatter, and their sum."""
    return _LogSumExpAndPicked.apply(logits, words)


class _LogSumExpAndPicked(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, words: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lse = torch.logsumexp(logits, dim=-1)
        ctx.save_for_backward(logits, lse, words)
        return lse, logits.gather(1, words)

    @staticmethod
    def backward(ctx, grad_lse: torch.Tensor, grad_picked: torch.Tensor):
        logits, lse, words = ctx.saved_tensors
        # d lse / d o = softmax(o), formed in place from one exp, then the picked words' gradient added
        grad = torch.sub(logits, lse.unsqueeze(1)).exp_().mul_(grad_lse.unsqueeze(1).to(logits.dtype))
        return grad.scatter_add_(1, words, grad_picked.to(grad.dtype)), None


def combine_distillation(cross_entropy: torch.Tensor, kl: torch.Tensor, teacher_target: torch.Tensor,
                         mask: torch.Tensor, kind: str, alpha: float, trust: float) -> torch.Tensor:
    """Paper 2's per-position losses from L_CE, L_KL and ln Q(y|c), summed over valid positions."""
    if kind == "kl":
        per_position = kl
    elif kind == "interp":
        per_position = alpha * cross_entropy + (1.0 - alpha) * kl
    elif kind == "tr":
        per_position = trust_weight(teacher_target, trust) * cross_entropy + kl
    else:
        raise ValueError(f"unknown distillation loss {kind!r}; expected kl, interp or tr")
    return torch.where(mask, per_position, torch.zeros_like(per_position)).sum()


@torch.no_grad()
def trust_weight(teacher_target_log_probs: torch.Tensor, trust: float) -> torch.Tensor:
    """R(y) = -a ln(1 - Q(y|c)) (paper 2, Eq. 6) from ln Q(y|c): (N,) -> (N,)."""
    one_minus_q = -torch.expm1(teacher_target_log_probs.clamp_max(0.0))  # 1 - Q, exact for small Q
    return -trust * torch.log(one_minus_q.clamp_min(TRUST_FLOOR))


@torch.no_grad()
def trust_gamma(teacher_target_log_probs: torch.Tensor, trust: float) -> torch.Tensor:
    """The per-position gamma of a self-normalized student (`nce-tr`): trust regularization's
    R(y) L_CE + L_KL is, up to the factor 1 + R, the cross-entropy against the normalized mixture
    (R 1[x=y] + Q(x|c)) / (1 + R), which is p_gamma of Eq. 8 with gamma = R / (1 + R)."""
    r = trust_weight(teacher_target_log_probs, trust)
    return r / (1.0 + r)


class _WeightedSampleTerm(torch.autograd.Function):
    """sum_w [weight(w) log sig(delta(w)) - delta(w)] per position: delta, weight (N, S) -> (N,).

    The same value and gradient as autograd on the expression (tested), in fewer passes over
    (N, S) and fewer buffers: the weighting happens in place, and the gradient
    weight sig(-delta) - 1 is formed in place from one sigmoid (cheaper here than log-sigmoid's
    backward). `weight` is a constant (no gradient)."""

    @staticmethod
    def forward(ctx, delta: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        log_sig = F.logsigmoid(delta)  # (N, S)
        weighted = log_sig.mul_(weight).sum(-1)  # (N,), in place: log_sig is not needed again
        ctx.save_for_backward(delta, weight)
        return weighted - delta.sum(-1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        delta, weight = ctx.saved_tensors
        grad_delta = torch.sigmoid(delta).neg_().add_(1.0)  # sig(-delta)  (N, S)
        grad_delta.mul_(weight).sub_(1.0).mul_(grad.unsqueeze(-1))
        return grad_delta, None
