"""The Dockerfile and the Kubernetes manifest: linted and schema-checked, and what they start is
the documented `rescorer-server` with the documented environment variables (no Docker engine
runs here, so the image's command is run as the image would run it)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from rescorer.artifact import save_artifact
from server.readiness import wait_until_ready
from server.settings import Settings
from tests.nbest_fixtures import tiny_artifact
from tests.server_harness import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert found, f"{name} is a dev dependency: make install"
    return found


def _final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the last stage, continuation lines joined, comments dropped."""
    lines, current = [], ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        current += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            lines.append(current)
            current = ""
    stages = [i for i, line in enumerate(lines) if line.upper().startswith("FROM ")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines[stages[-1]:]]


def _env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in stage:
        if instruction == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(args))
    return env


def test_the_dockerfile_is_hadolint_clean():
    done = subprocess.run([_tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_runs_rescorer_server_as_documented_and_its_healthcheck_sees_it_ready(tmp_path):
    stage = _final_stage(ROOT / "Dockerfile")
    (command,) = [json.loads(args) for instruction, args in stage if instruction == "CMD"]
    assert command == ["rescorer-server"]
    env = _env_of(stage)
    assert {k: env[k] for k in ("RESCORER_MODEL_DIR", "RESCORER_HOST", "RESCORER_PORT")} == {
        "RESCORER_MODEL_DIR": "/models", "RESCORER_HOST": "0.0.0.0", "RESCORER_PORT": "8000"}
    assert all(k[len("RESCORER_"):].lower() in Settings.model_fields for k in env if k.startswith("RESCORER_"))
    assert any(instruction == "USER" and args != "root" and args != "0" for instruction, args in stage)
    (healthcheck,) = [args for instruction, args in stage if instruction == "HEALTHCHECK"]
    probe = json.loads(healthcheck.split("CMD", 1)[1])

    # the image's command with the image's environment; only the model path and the port are
    # this machine's, and the address is loopback (tests talk to 127.0.0.1 only)
    models = tmp_path / "models"
    save_artifact(tiny_artifact(), models / "tiny")
    port = str(free_port())
    run_env = {**os.environ, **env, "RESCORER_MODEL_DIR": str(models), "RESCORER_PORT": port,
               "RESCORER_HOST": "127.0.0.1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen(command, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", 60, process)
        assert subprocess.run([sys.executable if probe[0] == "python" else probe[0], *probe[1:]], env=run_env,
                              timeout=30).returncode == 0
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_the_kubernetes_manifest_passes_its_schema_and_matches_the_image():
    manifest = ROOT / "deploy" / "kubernetes.yaml"
    done = subprocess.run([_tool("kubernetes-validate"), "--strict", str(manifest)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    deployment, service = list(yaml.safe_load_all(manifest.read_text()))
    assert deployment["spec"]["replicas"] >= 2 and service["kind"] == "Service"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert all(k[len("RESCORER_"):].lower() in Settings.model_fields for k in env)
    assert env["RESCORER_PORT"] == str(container["ports"][0]["containerPort"])
    assert (container["readinessProbe"]["httpGet"]["path"], container["livenessProbe"]["httpGet"]["path"]) == (
        "/readyz", "/healthz")
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10001  # the image's USER


def test_the_schema_check_catches_a_misspelt_field(tmp_path):
    bad = (ROOT / "deploy" / "kubernetes.yaml").read_text().replace("containerPort:", "containerPorts:")
    (tmp_path / "bad.yaml").write_text(bad)
    done = subprocess.run([_tool("kubernetes-validate"), "--strict", str(tmp_path / "bad.yaml")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode != 0


def test_the_readmes_run_commands_match_the_image_and_the_manifest():
    import re

    readme = (ROOT / "README.md").read_text()
    exposed = re.search(r"^EXPOSE (\d+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE).group(1)
    published = set(re.findall(r"docker run .*?-p \d+:(\d+)", readme))
    assert published == {exposed}  # every docker run in the README reaches the port the image serves
    manifest = list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes.yaml").read_text()))
    ports = {str(p["containerPort"]) for d in manifest if d["kind"] == "Deployment"
             for c in d["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
    assert ports == {exposed}
    for link in re.findall(r"\]\((deploy/[^)]+|Dockerfile)\)", readme):  # every linked deployment file exists
        assert (ROOT / link).is_file(), link
    assert "deploy/kubernetes.yaml" in re.findall(r"\]\((deploy/[^)]+)\)", readme)
