import json

import pytest
import torch

from rescorer.artifact import Artifact, ArtifactError, config_hash, load_artifact, save_artifact, set_log_z
from rescorer.model import LstmLanguageModel, ModelConfig
from rescorer.vocab import build_vocabulary


def _artifact(output_kind: str = "self_normalized") -> Artifact:
    torch.manual_seed(0)
    vocab = build_vocabulary(dict.fromkeys("abcdefg", 1))
    model = LstmLanguageModel(ModelConfig(vocab_size=len(vocab), embedding_dim=8, hidden_dim=8, num_layers=1,
                                          output_kind=output_kind)).eval()
    return Artifact(model, vocab, {"loss": "nce"})


def _outputs(model: LstmLanguageModel) -> torch.Tensor:
    features, _ = model.features(torch.tensor([[0, 3, 4, 5]]))
    return model.log_prob_of(features, torch.tensor([[3, 4, 5, 1]]))


@pytest.mark.parametrize("kind", ["self_normalized", "softmax"])
def test_saved_artifact_loads_to_a_model_with_identical_scores(tmp_path, kind):
    artifact = _artifact(kind)
    save_artifact(artifact, tmp_path / "lm")
    assert sorted(p.name for p in (tmp_path / "lm").iterdir()) == ["config.json", "model.safetensors", "words.txt"]
    loaded = load_artifact(tmp_path / "lm")
    assert torch.equal(_outputs(loaded.model), _outputs(artifact.model))
    assert loaded.vocab.words == artifact.vocab.words
    config = json.loads((tmp_path / "lm" / "config.json").read_text())
    assert config["output_kind"] == kind and config["provenance"] == {"loss": "nce"}


def test_saving_over_an_existing_artifact_replaces_it_whole(tmp_path):
    save_artifact(_artifact(), tmp_path / "lm")
    (tmp_path / "lm" / "stray.txt").write_text("old")
    save_artifact(_artifact("softmax"), tmp_path / "lm")
    assert not (tmp_path / "lm" / "stray.txt").exists()
    assert load_artifact(tmp_path / "lm").model.config.output_kind == "softmax"
    assert [p.name for p in tmp_path.iterdir()] == ["lm"]  # no temporary directories left


def test_truncated_weights_are_reported_by_file_name(tmp_path):
    save_artifact(_artifact(), tmp_path / "lm")
    weights = tmp_path / "lm" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ArtifactError, match=r"model\.safetensors: sha256 does not match"):
        load_artifact(tmp_path / "lm")


def test_every_file_must_have_a_recorded_hash(tmp_path):
    save_artifact(_artifact(), tmp_path / "lm")
    config_path = tmp_path / "lm" / "config.json"
    config = json.loads(config_path.read_text())
    del config["files"]["model.safetensors"]  # would have skipped the check on the weights
    config["config_sha256"] = config_hash(config)  # a consistent forgery, not an accidental edit
    config_path.write_text(json.dumps(config))
    (tmp_path / "lm" / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ArtifactError, match=r"config\.json: 'files' must map exactly"):
        load_artifact(tmp_path / "lm")


TAMPERED = [
    (lambda c: c.update(files=["words.txt"]), "'files'"),
    (lambda c: c.update(files=None), "'files'"),
    (lambda c: c["files"].update({"words.txt": 5}), "'files.words.txt'"),
    (lambda c: c.update(log_z=None), "'log_z'"),
    (lambda c: c.update(log_z="abc"), "'log_z'"),
    (lambda c: c.update(log_z=1e400), "'log_z'"),
    (lambda c: c.update(vocab_sha256=12), "'vocab_sha256'"),
    (lambda c: c["model"].update(hidden_dim=128.5), "'model.hidden_dim'"),
    (lambda c: c["model"].update(hidden_dim=10**7), "'model.hidden_dim'"),
    (lambda c: c["model"].update(hidden_dim=True), "'model.hidden_dim'"),
    (lambda c: c["model"].update(hidden_dim=4096), "parameters, more than"),  # fits the bounds, not the file
    (lambda c: c["model"].update(dropout="x"), "'model.dropout'"),
    (lambda c: c.update(model=[1, 2]), "'model' must be an object"),
    (lambda c: c.update(provenance=[1]), "'provenance'"),
    (lambda c: c["provenance"].update(rescoring_weights={"am_weight": "x"}), "rescoring_weights.am_weight"),
    (lambda c: c["provenance"].update(rescoring_weights=[1]), "rescoring_weights"),
    (lambda c: c["provenance"].update(rescoring_weights={"lm_weight": 1e300}), "rescoring_weights.lm_weight"),
    (lambda c: c["provenance"].update(rescoring_weights={"bogus": 1}), "unknown weight"),
    (lambda c: c.update(format_version=True), "format_version"),
]


@pytest.mark.parametrize("tamper, named", TAMPERED)
def test_a_tampered_config_is_one_error_naming_the_key(tmp_path, tamper, named):
    save_artifact(_artifact(), tmp_path / "lm")
    config_path = tmp_path / "lm" / "config.json"
    config = json.loads(config_path.read_text())
    tamper(config)
    config["config_sha256"] = config_hash(config)  # re-hashed: every check below the hash still holds
    config_path.write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="config.json") as error:
        load_artifact(tmp_path / "lm")
    assert named in str(error.value)


@pytest.mark.parametrize("edit", [
    lambda c: c.update(log_z=c["log_z"] + 1), lambda c: c.update(unk_symbol="a"),
    lambda c: c["provenance"].update(note="x"), lambda c: c["model"].update(dropout=0.5),
])
def test_a_config_edited_by_hand_is_reported(tmp_path, edit):
    save_artifact(_artifact(), tmp_path / "lm")
    config_path = tmp_path / "lm" / "config.json"
    config = json.loads(config_path.read_text())
    edit(config)
    config_path.write_text(json.dumps(config, indent=2))
    with pytest.raises(ArtifactError, match="edited after it was written"):
        load_artifact(tmp_path / "lm")


def test_an_artifact_with_a_nan_weight_is_refused_by_name(tmp_path):
    from safetensors.torch import load_file, save_file

    from rescorer.artifact import _config_text, _sha256

    save_artifact(_artifact(), tmp_path / "lm")
    weights = tmp_path / "lm" / "model.safetensors"
    state = load_file(str(weights))
    name = next(iter(state))
    state[name].view(-1)[0] = float("nan")
    save_file(state, str(weights))
    config_path = tmp_path / "lm" / "config.json"
    config = json.loads(config_path.read_text())
    config["files"]["model.safetensors"] = _sha256(weights)  # hashes consistent: only the values are wrong
    config_path.write_text(_config_text(config))
    with pytest.raises(ArtifactError, match=f"tensor '{name}' holds NaN"):
        load_artifact(tmp_path / "lm")


def test_written_files_take_the_umask_and_rewrites_keep_the_mode(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        save_artifact(_artifact(), tmp_path / "lm")
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "lm").iterdir()}
        assert stat.S_IMODE((tmp_path / "lm").stat().st_mode) == 0o755
        assert set(modes.values()) == {0o644}, modes
        (tmp_path / "lm" / "config.json").chmod(0o640)
        set_log_z(tmp_path / "lm", 1.0)
        assert stat.S_IMODE((tmp_path / "lm" / "config.json").stat().st_mode) == 0o640
    finally:
        os.umask(old)


def test_a_symlink_loop_is_an_artifact_error(tmp_path):
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "config.json").symlink_to(tmp_path / "lm" / "config.json")
    with pytest.raises(ArtifactError, match="cannot read"):
        load_artifact(tmp_path / "lm")


def test_a_vocabulary_that_does_not_match_the_artifact_is_refused(tmp_path):
    save_artifact(_artifact(), tmp_path / "lm")
    words = tmp_path / "lm" / "words.txt"
    words.write_text(words.read_text().replace("a ", "z "))
    with pytest.raises(ArtifactError, match=r"words\.txt"):
        load_artifact(tmp_path / "lm")


def test_missing_config_and_non_directories_are_clear_errors(tmp_path):
    with pytest.raises(ArtifactError, match="nothing: no such artifact directory"):
        load_artifact(tmp_path / "nothing")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ArtifactError, match="a-file: not a directory"):
        load_artifact(tmp_path / "a-file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match=r"config\.json: missing"):
        load_artifact(tmp_path / "empty")


def test_set_log_z_rewrites_only_the_constant_and_records_why(tmp_path):
    save_artifact(_artifact(), tmp_path / "lm")
    before = _outputs(load_artifact(tmp_path / "lm").model)
    set_log_z(tmp_path / "lm", float(load_artifact(tmp_path / "lm").log_z) + 0.5, note={"shift": 0.5})
    loaded = load_artifact(tmp_path / "lm")
    assert torch.allclose(_outputs(loaded.model), before - 0.5, atol=1e-6)
    assert loaded.provenance["recentering"] == [{"shift": 0.5}]


@pytest.mark.parametrize("values", [
    dict(num_layers=2), dict(projection_dim=5), dict(tie_weights=True, projection_dim=8),
    dict(output_kind="mos", experts=3), dict(output_kind="softmax", num_layers=3, projection_dim=4),
])
def test_parameter_count_equals_the_weights_a_model_allocates(values):
    from rescorer.artifact import parameter_count
    from rescorer.model import LstmLanguageModel, ModelConfig

    config = ModelConfig(vocab_size=17, embedding_dim=8, hidden_dim=6, **values)
    assert parameter_count(config) == sum(p.numel() for p in LstmLanguageModel(config).parameters())
