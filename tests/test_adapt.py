"""`rescorer-train adapt`: NCE fine-tuning and NCE+KLD from an artifact (paper 1, section 4)."""

import hashlib
import json
from pathlib import Path

import pytest
import torch

from rescorer.artifact import load_artifact
from rescorer.vocab import Vocabulary
from tests.conftest import tiny_config, with_other_vocabulary
from training.batches import BpttBatches
from training.cli import main as train_cli
from training.corpus import encode_corpus
from training.demo_corpus import write_demo_domain
from training.noise import UnigramNoise
from training.objective import TrainingObjective
from training.reference import FrozenReference, ReferenceFeatures, load_reference
from training.train import train


@pytest.fixture(scope="module")
def general(demo_corpus, tmp_path_factory) -> Path:
    """A general model on the toy grammar: the init and reference of every test here."""
    out = tmp_path_factory.mktemp("general")
    return train(tiny_config(demo_corpus, out / "run", max_epochs=2), progress=False).artifact_path


@pytest.fixture(scope="module")
def domain(tmp_path_factory) -> dict[str, Path]:
    return write_demo_domain(tmp_path_factory.mktemp("domain"), train=200, dev=60, test=60)


def _adapt(demo_corpus, domain, general, out, **overrides):
    values = dict(train_path=str(domain["domain-train"]), dev_path=str(domain["domain-dev"]),
                  init_path=str(general), reference_path=str(general), gamma=0.5, lr=0.1, max_epochs=2)
    values.update(overrides)
    return train(tiny_config(demo_corpus, out, **values), progress=False)


def _digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_adaptation_lowers_in_domain_perplexity_and_records_init_reference_and_gamma(demo_corpus, domain, general, tmp_path):
    before = _digest(general)
    result = _adapt(demo_corpus, domain, general, tmp_path / "run")
    assert _digest(general) == before  # the reference (and init) artifact is not changed by a run
    artifact = load_artifact(result.artifact_path)
    adaptation = artifact.provenance["adaptation"]
    config_sha = hashlib.sha256((general / "config.json").read_bytes()).hexdigest()
    assert adaptation["init"] == {"path": str(general), "sha256": config_sha}
    assert adaptation["reference"] == {"path": str(general), "sha256": config_sha}
    assert adaptation["gamma"] == 0.5 and adaptation["reference_used"] is True
    assert artifact.provenance["loss"] == "nce+kld"
    assert result.final_dev["normalized_ppl"] < adaptation["init_dev"]["normalized_ppl"]
    assert artifact.log_z == load_artifact(general).log_z  # the init's constant is kept
    # it stays self-normalized: log Z(h) near 0 on the in-domain dev set
    assert abs(result.final_dev["log_z_mean"]) < 0.5 and result.final_dev["log_z_var"] < 0.5


def test_gamma_one_never_reads_the_reference_and_equals_fine_tuning_without_one(demo_corpus, domain, general, tmp_path):
    with_reference = _adapt(demo_corpus, domain, general, tmp_path / "a", gamma=1.0)
    without = _adapt(demo_corpus, domain, general, tmp_path / "b", gamma=1.0, reference_path=None)
    a = load_artifact(with_reference.artifact_path).model.state_dict()
    b = load_artifact(without.artifact_path).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert load_artifact(with_reference.artifact_path).provenance["loss"] == "nce"


def test_cached_reference_features_give_the_run_that_recomputing_them_gives(demo_corpus, domain, general, tmp_path):
    cached = _adapt(demo_corpus, domain, general, tmp_path / "a", cache_reference_features=True)
    recomputed = _adapt(demo_corpus, domain, general, tmp_path / "b", cache_reference_features=False)
    a = [r["dev_normalized_ppl"] for r in cached.history]
    b = [r["dev_normalized_ppl"] for r in recomputed.history]
    assert a == pytest.approx(b, rel=1e-5)


def test_adaptation_resumes_to_the_uninterrupted_result(demo_corpus, domain, general, tmp_path):
    straight = _adapt(demo_corpus, domain, general, tmp_path / "a", max_epochs=3)
    _adapt(demo_corpus, domain, general, tmp_path / "b", max_epochs=1)
    resumed = train(tiny_config(demo_corpus, tmp_path / "b", train_path=str(domain["domain-train"]),
                                dev_path=str(domain["domain-dev"]), init_path=str(general),
                                reference_path=str(general), gamma=0.5, lr=0.1, max_epochs=3),
                    resume=True, progress=False)
    assert [r["dev_normalized_ppl"] for r in resumed.history] == [r["dev_normalized_ppl"] for r in straight.history]


def test_the_reference_gets_no_gradient_and_is_read_only_at_target_and_sample_words(general, tmp_path):
    reference_artifact = load_reference(general, load_artifact(general).vocab.sha256, "--reference")
    reference = FrozenReference([reference_artifact.model])
    model = load_artifact(general).model
    model.train()
    V = model.config.vocab_size
    objective = TrainingObjective(model, "nce", bos_id=0, noise=UnigramNoise(torch.arange(V) + 1.0),
                                  reference=reference, gamma=0.3)
    before = {k: v.clone() for k, v in reference.models[0].state_dict().items()}

    def forbidden(*args, **kwargs):
        raise AssertionError("the reference must never compute logits over the vocabulary")

    reference.models[0].logits = forbidden
    inputs = torch.tensor([[0, 5, 6, 7], [0, 8, 9, 10]])
    targets = torch.tensor([[5, 6, 7, 1], [8, 9, 10, 1]])
    features, _ = reference.features(inputs, None)
    loss, _ = objective(inputs, targets, None, torch.tensor([3, 5, 5, 12]), features)
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in reference.models[0].parameters())
    assert all(torch.equal(before[k], v) for k, v in reference.models[0].state_dict().items())
    assert model.lstm.weight_hh_l0.grad is not None  # the trained model does learn


def test_reference_features_cached_once_equal_those_computed_window_by_window(general, domain, tmp_path):
    artifact = load_artifact(general)
    vocab: Vocabulary = artifact.vocab
    ids = encode_corpus(domain["domain-train"], vocab, tmp_path).ids()
    batches = BpttBatches(ids, batch_size=4, bptt=7)
    reference = FrozenReference([artifact.model])
    cached = list(ReferenceFeatures(reference, batches, cached=True).epoch())
    fresh = list(ReferenceFeatures(reference, batches, cached=False).epoch())
    assert len(cached) == len(batches) == len(fresh)
    for a, b in zip(cached, fresh, strict=True):
        torch.testing.assert_close(a, b)


def test_temperature_divides_the_references_self_normalized_score(general):
    artifact = load_artifact(general)
    features = torch.randn(3, artifact.model.config.feature_dim)
    targets, samples = torch.tensor([4, 5, 6]), torch.tensor([7, 8])
    plain = FrozenReference([artifact.model]).log_probs_at((features,), targets, samples)
    hot = FrozenReference([artifact.model], temperature=2.0).log_probs_at((features,), targets, samples)
    torch.testing.assert_close(hot[0], plain[0] / 2)
    torch.testing.assert_close(hot[1], plain[1] / 2)
    expected = artifact.model.word_logits(features, torch.tensor([8, 8, 8])) - artifact.model.log_z
    torch.testing.assert_close(plain[1][:, 1], expected)


def _cli(args, capsys):
    code = train_cli(args)
    return code, capsys.readouterr().err


def test_adapt_cli_writes_an_artifact_that_rescorer_info_verifies(general, domain, tmp_path, capsys):
    from rescorer.cli import main as rescorer_cli

    out = tmp_path / "run"
    code, _ = _cli(["adapt", "--init", str(general), "--train", str(domain["domain-train"]),
                    "--dev", str(domain["domain-dev"]), "--out", str(out), "--gamma", "0.25",
                    "--max-epochs", "1", "--batch-size", "8", "--bptt", "10", "--noise-samples", "16",
                    "--no-progress"], capsys)
    assert code == 0
    config = json.loads((out / "artifact" / "config.json").read_text())
    assert config["provenance"]["adaptation"]["gamma"] == 0.25
    assert config["provenance"]["adaptation"]["reference"]["path"] == str(general)  # defaults to --init
    assert rescorer_cli(["info", str(out / "artifact")]) == 0


def test_adapt_cli_refuses_bad_input_with_exit_2_and_writes_nothing(general, domain, demo_corpus, tmp_path, capsys):
    # a reference with another vocabulary
    with_other_vocabulary(general, tmp_path / "other")
    not_an_artifact = tmp_path / "plain"
    not_an_artifact.mkdir()
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("xyzzy plugh\nfoo bar baz\n")
    base = ["adapt", "--train", str(domain["domain-train"]), "--dev", str(domain["domain-dev"]),
            "--max-epochs", "1", "--no-progress"]
    cases = [
        (["--init", str(general), "--reference", str(tmp_path / "other")], "vocabulary"),
        (["--init", str(general), "--gamma", "1.5"], "gamma"),
        (["--init", str(general), "--gamma", "-0.1"], "gamma"),
        (["--init", str(general), "--gamma", "nan"], "gamma"),
        (["--init", str(not_an_artifact)], "--init"),
        (["--init", str(general), "--reference", str(not_an_artifact)], "--reference"),
        (["--init", str(general), "--train", str(foreign)], "foreign.txt"),
    ]
    for i, (extra, expected) in enumerate(cases):
        out = tmp_path / f"out{i}"
        code, err = _cli(base + extra + ["--out", str(out)], capsys)
        assert code == 2, (extra, err)
        assert expected in err and "Traceback" not in err, (extra, err)
        assert not out.exists(), extra
