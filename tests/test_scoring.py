import numpy as np
import pytest
import torch

from rescorer.sentence_scoring import score_sentences
from tests.nbest_fixtures import tiny_artifact

SENTENCES = [s.split() for s in [
    "the cat sat on the mat", "the cat sat on a mat", "the cat sat", "", "a dog ran far away",
    "a dog ran away", "the zebra sat", "the cat sat on the mat", "mat",
]]


def _reference(artifact, words):
    """One sentence, full softmax or gathered row, by the definition."""
    vocab, model = artifact.vocab, artifact.model
    ids = vocab.encode(words)
    with torch.no_grad():
        features, _ = model.features(torch.tensor([[vocab.bos_id, *ids]]))
        logits = model.logits(features[0]).double()
        targets = torch.tensor([*ids, vocab.eos_id])
        if model.is_self_normalized:
            return float((logits.gather(1, targets[:, None]).squeeze(1) - float(model.log_z)).sum())
        return float(torch.log_softmax(logits, -1).gather(1, targets[:, None]).sum())


@pytest.mark.parametrize("kind", ["self_normalized", "softmax"])
def test_batched_padded_and_one_by_one_scoring_agree(kind):
    artifact = tiny_artifact(kind)
    expected = np.array([_reference(artifact, s) for s in SENTENCES])
    batched = score_sentences(artifact, SENTENCES, max_tokens=4096).log_probs
    tiny_batches = score_sentences(artifact, SENTENCES, max_tokens=1).log_probs
    one_by_one = np.array([score_sentences(artifact, [s]).log_probs[0] for s in SENTENCES])
    unpadded = score_sentences(artifact, SENTENCES, step_cost=0.0).log_probs  # one batch per length
    filled = score_sentences(artifact, SENTENCES, step_cost=1e9).log_probs  # budget-filling batches
    for result in (batched, tiny_batches, one_by_one, unpadded, filled):
        np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)


def test_per_token_scores_sum_to_the_sentence_and_include_the_end_symbol():
    artifact = tiny_artifact()
    result = score_sentences(artifact, SENTENCES, per_token=True)
    for words, tokens, total in zip(SENTENCES, result.token_log_probs, result.log_probs, strict=True):
        assert len(tokens) == len(words) + 1
        assert tokens.sum() == pytest.approx(total, abs=1e-9)
    assert (result.num_tokens == [len(s) + 1 for s in SENTENCES]).all()


def test_oov_words_are_scored_as_unk_and_counted():
    artifact = tiny_artifact()
    result = score_sentences(artifact, [["the", "zebra", "sat"], ["the", "<unk>", "sat"]])
    assert result.num_oov.tolist() == [1, 0]
    assert result.log_probs[0] == pytest.approx(result.log_probs[1], abs=1e-6)


def test_the_empty_sentence_scores_the_end_symbol_only():
    artifact = tiny_artifact()
    result = score_sentences(artifact, [[]], per_token=True)
    assert len(result.token_log_probs[0]) == 1
    assert result.log_probs[0] == pytest.approx(_reference(artifact, []), abs=1e-6)


def test_self_normalized_scoring_never_forms_the_full_output_layer():
    artifact = tiny_artifact()

    def forbidden(*args, **kwargs):
        raise AssertionError("self-normalized scoring must not compute logits over the vocabulary")

    artifact.model.logits = forbidden
    assert np.isfinite(score_sentences(artifact, SENTENCES).log_probs).all()


def test_log_z_telemetry_matches_the_evaluation_statistics():
    from rescorer.self_normalization import log_z_of_sentence
    from training.perplexity import evaluate

    artifact = tiny_artifact()
    sentences = [s for s in SENTENCES if "zebra" not in s]
    values = np.concatenate([log_z_of_sentence(artifact, s) for s in sentences])
    stats = evaluate(artifact.model, [artifact.vocab.encode(s) for s in sentences],
                     artifact.vocab.bos_id, artifact.vocab.eos_id)
    assert values.mean() == pytest.approx(stats.log_z_mean, abs=1e-6)
    assert values.var() == pytest.approx(stats.log_z_var, abs=1e-6)
