import math

import pytest
import torch

from rescorer.model import LstmLanguageModel, ModelConfig


def _model(**overrides) -> LstmLanguageModel:
    torch.manual_seed(0)
    config = dict(vocab_size=30, embedding_dim=8, hidden_dim=12, num_layers=2, dropout=0.0)
    config.update(overrides)
    return LstmLanguageModel(ModelConfig(**config)).eval()


def test_self_normalized_log_prob_is_one_dot_product_minus_the_constant():
    model = _model()
    assert math.isclose(float(model.log_z), math.log(30), rel_tol=1e-6)
    features, _ = model.features(torch.tensor([[0, 4, 5]]))  # (1, 3, 12)
    words = torch.tensor([[4, 5, 1]])
    expected = model.logits(features).gather(-1, words.unsqueeze(-1)).squeeze(-1) - model.log_z
    assert torch.allclose(model.log_prob_of(features, words), expected, atol=1e-6)


def test_softmax_log_prob_is_normalized_over_the_vocabulary():
    model = _model(output_kind="softmax")
    features, _ = model.features(torch.tensor([[0, 4]]))
    all_words = torch.arange(30).expand(1, 2, 30).permute(2, 0, 1)  # (30, 1, 2)
    total = torch.logsumexp(torch.stack([model.log_prob_of(features, w) for w in all_words]), dim=0)
    assert torch.allclose(total, torch.zeros_like(total), atol=1e-5)


def test_projection_and_tied_weights_share_the_embedding_as_output_rows():
    model = _model(projection_dim=8, tie_weights=True)
    assert model.output_rows is model.embedding.weight
    assert model.output_embedding is None and "output_bias.weight" in model.state_dict()
    features, _ = model.features(torch.tensor([[0, 1]]))
    assert features.shape == (1, 2, 8)


def test_tying_with_mismatched_sizes_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="projection_dim=8"):
        ModelConfig(vocab_size=30, embedding_dim=8, hidden_dim=12, tie_weights=True)


def test_carrying_the_state_equals_running_the_whole_sequence():
    model = _model()
    ids = torch.tensor([[0, 5, 6, 7, 8, 9]])
    whole, _ = model.features(ids)
    first, state = model.features(ids[:, :3])
    second, _ = model.features(ids[:, 3:], state)
    assert torch.allclose(torch.cat([first, second], dim=1), whole, atol=1e-6)
