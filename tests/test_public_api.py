"""The library's public API: the README's example runs as written, and nothing imports in a circle."""

import ast
import re
from pathlib import Path

import rescorer
from tests.conftest import tiny_config
from training.demo_nbest import write_demo_nbest
from training.train import train

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_example_runs_on_a_model_and_lists_like_the_demos(demo_corpus, tmp_path, capsys):
    block = re.search(r"## Library.*?```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    artifact = train(tiny_config(demo_corpus, tmp_path / "run", max_epochs=1), progress=False).artifact_path
    nbest = write_demo_nbest(tmp_path / "nbest")
    code = (block.replace("build/demo/run/artifact", str(artifact))
                 .replace("build/demo/data/nbest/dev.jsonl", str(nbest["dev"]))
                 .replace("build/demo/data/nbest/test.jsonl", str(nbest["test"])))
    exec(compile(code, "README.md", "exec"), {})
    assert re.search(r"test WER \d+\.\d+% -> \d+\.\d+% with Weights\(", capsys.readouterr().out)


def test_the_public_api_is_listed_and_importable():
    assert set(rescorer.__all__) <= set(dir(rescorer))
    for name in ("load_artifact", "read_nbest", "score_nbest", "rerank", "compute_wer", "tune_weights", "InputError"):
        assert name in rescorer.__all__


def _imports(path: Path, package: str) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return {m for m in modules if m.split(".")[0] in ("rescorer", "training", "server")}


def test_no_import_circle_and_the_dependency_direction_holds():
    graph = {}
    for package in ("rescorer", "training", "server"):
        for path in (ROOT / package).rglob("*.py"):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            graph[module] = _imports(path, package)
    for module, deps in graph.items():
        if module.startswith("rescorer"):
            assert not any(d.startswith(("training", "server")) for d in deps), module
        if module.startswith("training"):
            assert not any(d.startswith("server") for d in deps), module
    # depth-first search for a cycle among the project's modules (package __init__ re-exports excluded)
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for dep in graph.get(module, ()):
            if dep not in graph or dep in ("rescorer", "training", "server"):
                continue
            assert state.get(dep) != 1, "import circle: " + " -> ".join(trail + [dep])
            if dep not in state:
                visit(dep, trail + [dep])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])


def _options(parser, prefix=""):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{prefix}{name} ")
        elif not isinstance(action, argparse._HelpAction):
            yield prefix + (action.option_strings[-1] if action.option_strings else action.dest), action


def test_every_option_of_the_three_clis_has_help_with_its_default():
    from rescorer.cli import build_parser as rescorer_parser
    from server.cli import build_parser as server_parser
    from training.cli import build_parser as train_parser

    parsers = {"rescorer": rescorer_parser(), "rescorer-train": train_parser(), "rescorer-server": server_parser()}
    missing, no_default = [], []
    for program, parser in parsers.items():
        for name, action in _options(parser):
            if action.dest == "command":
                continue
            if not action.help:
                missing.append(f"{program} {name}")
            # an option with a default value says it (None: "not given", described by the help)
            has_default = action.option_strings and action.nargs != 0 and action.default not in (None, False)
            if has_default and "default" not in action.help:
                no_default.append(f"{program} {name}: {action.help}")
    assert not missing, missing
    assert not no_default, no_default


def test_one_device_rule_for_the_trainer_and_the_service():
    import pytest
    import torch

    from rescorer.device import pick_device
    from rescorer.errors import ConfigError

    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="unknown device"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        for name in ("cuda", "cuda:1"):
            with pytest.raises(ConfigError, match="CUDA is not available"):
                pick_device(name)


def test_every_package_is_in_the_distribution():
    """A package missing from pyproject's list works in the editable install and breaks the
    wheel (the Docker image's install): every directory with an __init__.py must be listed."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {str(p.parent.relative_to(root)).replace("/", ".")
             for top in ("rescorer", "training", "server") for p in (root / top).rglob("__init__.py")}
    assert found == listed
