import math

import torch
import torch.nn.functional as F

from rescorer.model import LstmLanguageModel, ModelConfig
from training.perplexity import evaluate

SENTENCES = [[3, 4, 5], [6], [], [7, 8, 9, 3, 4], [5, 5]]


def _model() -> LstmLanguageModel:
    torch.manual_seed(0)
    return LstmLanguageModel(ModelConfig(vocab_size=12, embedding_dim=8, hidden_dim=8, num_layers=1)).eval()


@torch.no_grad()
def _reference_log_probs(model: LstmLanguageModel) -> tuple[float, list[float]]:
    """One sentence at a time, full softmax, no batching: the definition."""
    total, log_zs = 0.0, []
    for words in SENTENCES:
        features, _ = model.features(torch.tensor([[0, *words]]))
        logits = model.logits(features[0]).double()
        targets = torch.tensor([*words, 1])
        total += float(F.log_softmax(logits, -1).gather(1, targets[:, None]).sum())
        log_zs += (torch.logsumexp(logits, -1) - float(model.log_z)).tolist()
    return total, log_zs


def test_normalized_perplexity_and_log_z_statistics_match_the_definition():
    model = _model()
    result = evaluate(model, SENTENCES, bos_id=0, eos_id=1)
    total, log_zs = _reference_log_probs(model)
    n = sum(len(s) + 1 for s in SENTENCES)
    assert result.num_tokens == n
    assert math.isclose(result.normalized_ppl, math.exp(-total / n), rel_tol=1e-6)
    mean = sum(log_zs) / n
    assert math.isclose(result.log_z_mean, mean, rel_tol=1e-6)
    assert math.isclose(result.log_z_var, sum((z - mean) ** 2 for z in log_zs) / n, rel_tol=1e-5)
    assert math.isclose(result.log_z_abs_mean, sum(abs(z) for z in log_zs) / n, rel_tol=1e-6)


def test_batch_size_does_not_change_any_figure():
    model = _model()
    small = evaluate(model, SENTENCES, bos_id=0, eos_id=1, max_tokens=1)
    large = evaluate(model, SENTENCES, bos_id=0, eos_id=1, max_tokens=10_000)
    for key, value in small.to_dict().items():
        assert math.isclose(value, large.to_dict()[key], rel_tol=1e-6, abs_tol=1e-9), key


def test_recentering_by_the_mean_makes_self_normalized_equal_normalized_perplexity():
    model = _model()
    before = evaluate(model, SENTENCES, bos_id=0, eos_id=1)
    model.log_z += before.log_z_mean
    after = evaluate(model, SENTENCES, bos_id=0, eos_id=1)
    assert abs(after.log_z_mean) < 1e-6
    assert math.isclose(after.self_normalized_ppl, after.normalized_ppl, rel_tol=1e-6)
    assert math.isclose(after.normalized_ppl, before.normalized_ppl, rel_tol=1e-9)
