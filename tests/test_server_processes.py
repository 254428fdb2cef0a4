"""Several serving processes behind one port (server/processes.py), as `rescorer-server
--processes 2` runs them: real processes on 127.0.0.1, bounded request counts and times."""

import concurrent.futures
import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import torch

from rescorer.artifact import save_artifact
from rescorer.errors import InputError
from server.cli import process_count
from server.processes import Cluster, process_tree
from server.readiness import wait_until_ready
from server.settings import Settings
from tests.nbest_fixtures import tiny_artifact
from tests.server_harness import free_port

ROOT = Path(__file__).resolve().parents[1]
SCORE = {"sentences": ["the cat sat", "a dog"]}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    save_artifact(tiny_artifact(), root / "tiny")
    return root


@contextmanager
def service(model_dir, *flags: str, processes: int = 2):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "server.cli", "--model-dir", str(model_dir), "--port", str(port),
                                "--processes", str(processes), "--precision", "fp32", *flags],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, 60, process)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        process.stdout.close()


def children_of(pid: int) -> set[int]:
    return set(process_tree(pid)) - {pid}


def requests_counted(url: str, expected: float, route: str = "/v1/score") -> float:
    """The service's count of 200s on `route`, read until it reaches `expected` (a process counts a
    request just after sending its answer, so a scrape by another process may come first) or 10 s."""
    deadline = time.monotonic() + 10
    while True:
        text = httpx.get(f"{url}/metrics", timeout=10).text
        match = re.search(rf'^rescorer_requests_total{{route="{re.escape(route)}",status="200"}} (\S+)$', text, re.M)
        count = float(match.group(1)) if match else 0.0
        if count >= expected or time.monotonic() > deadline:
            return count
        time.sleep(0.05)


def post_score(url: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/score", json=SCORE, timeout=30)  # a new connection each time


def test_each_process_answers_and_metrics_count_the_requests_of_all_of_them(model_dir):
    with service(model_dir) as (process, url):
        assert len(children_of(process.pid)) == 2
        seen, sent, answers = set(), 0, set()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            while len(seen) < 2 and sent < 400:  # which process accepts a connection is the kernel's choice
                for response in pool.map(lambda _: post_score(url), range(16)):
                    assert response.status_code == 200
                    seen.add(response.headers["x-rescorer-process"])
                    answers.add(tuple(s["log_prob"] for s in response.json()["scores"]))
                sent += 16
        assert seen == {"0", "1"}
        assert len(answers) == 1  # the same model in every process: the same scores
        # /metrics, from whichever process answers it, counts every process's requests
        assert requests_counted(url, sent) == sent
        text = httpx.get(f"{url}/metrics", timeout=10).text
        assert len(re.findall(r"^rescorer_queue_requests ", text, re.M)) == 1  # one gauge, summed over processes
        assert re.search(r'^rescorer_tokens_scored_total{model="tiny"} (\S+)$', text, re.M)


def test_a_killed_process_is_replaced_and_the_counts_it_made_are_kept(model_dir):
    with service(model_dir) as (process, url):
        for _ in range(10):
            assert post_score(url).status_code == 200
        before = children_of(process.pid)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = children_of(process.pid)
            if len(now) == 2 and victim not in now:
                break
            time.sleep(0.05)
        assert len(children_of(process.pid)) == 2 and victim not in children_of(process.pid)
        wait_until_ready(url, 30)
        for _ in range(5):
            assert post_score(url).status_code == 200
        assert requests_counted(url, 15) == 15  # the dead process's 200s are still counted
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        log = process.stdout.read().decode()
        assert f"(pid {victim}) was killed by signal {signal.SIGKILL}; replacing it" in log


def test_sigterm_answers_every_request_every_process_has_accepted_then_exits(model_dir):
    with service(model_dir, "--max-delay-ms", "3000", "--max-batch-requests", "1000", "--batch-tokens", "100000") as (process, url):
        children = children_of(process.pid)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(post_score, url) for _ in range(8)]
            deadline = time.monotonic() + 2.5  # all eight wait in their processes' 3 s batching windows
            while time.monotonic() < deadline and "rescorer_queue_requests 8.0" not in httpx.get(f"{url}/metrics").text:
                time.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            responses = [f.result() for f in futures]
        assert [r.status_code for r in responses] == [200] * 8
        assert process.wait(timeout=60) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in children)
        with pytest.raises(httpx.ConnectError):  # nothing listens any more
            httpx.get(f"{url}/healthz", timeout=5)


def test_the_settings_outside_the_app_hold_in_every_process(model_dir):
    # the request-read deadline: a client that never finishes its headers is dropped
    with service(model_dir, "--request-read-timeout-s", "0.5") as (_, url):
        host, port = url.removeprefix("http://").split(":")
        for _ in range(4):  # whichever process takes each connection
            with socket.create_connection((host, int(port)), timeout=10) as conn:
                conn.sendall(b"POST /v1/score HTTP/1.1\r\nhost: x\r\n")
                started = time.monotonic()
                assert conn.recv(100) == b""  # closed by the server
                assert time.monotonic() - started < 8
        assert post_score(url).status_code == 200


def test_readiness_needs_every_slot_held_by_a_live_process(tmp_path):
    cluster = Cluster(tmp_path, processes=2, slot=0)
    cluster.ready_dir.mkdir()
    cluster.mark_ready()
    assert not cluster.all_ready()  # slot 1 has not started
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (cluster.ready_dir / "1").write_text(str(dead.pid))
    assert not cluster.all_ready()  # slot 1's process is gone
    (cluster.ready_dir / "1").write_text(str(os.getppid()))
    assert cluster.all_ready()
    cluster.mark_stopping()
    assert not cluster.all_ready()


def _run_script(script: str, directory: Path) -> subprocess.CompletedProcess:
    """`script` in a fresh Python process with the project importable, `directory` as its argument."""
    return subprocess.run([sys.executable, "-c", script, str(directory)], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60)


def test_a_service_whose_processes_keep_dying_stops_with_status_1(tmp_path):
    script = (
        "import socket, sys\n"
        "from pathlib import Path\n"
        "from server.processes import MAX_RESTARTS, Supervisor, enable_multiprocess_metrics, listening_socket\n"
        "directory = Path(sys.argv[1])\n"
        "enable_multiprocess_metrics(directory / 'metrics')\n"
        "def serve(cluster, sock):\n"
        "    raise SystemExit(3)\n"
        "sys.exit(Supervisor(2, listening_socket('127.0.0.1', 0), directory, serve, 1.0).run())\n")
    done = _run_script(script, tmp_path)
    assert done.returncode == 1, done.stderr
    assert "processes died within 60 s; stopping the service" in done.stderr


def test_processes_default_to_one_per_core_on_cpu_and_one_on_cuda(model_dir):
    cores = len(os.sched_getaffinity(0))
    assert process_count(Settings(model_dir=model_dir), torch.device("cpu")) == cores
    assert process_count(Settings(model_dir=model_dir, processes=3), torch.device("cpu")) == 3
    assert process_count(Settings(model_dir=model_dir), torch.device("cuda")) == 1
    with pytest.raises(InputError, match="one service per GPU"):
        process_count(Settings(model_dir=model_dir, processes=2), torch.device("cuda"))


@pytest.mark.parametrize(("files", "expected"), [
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),
    ({"cpu.max": "garbage"}, None),
])
def test_a_cgroup_cpu_quota_caps_the_cores_the_service_counts(tmp_path, files, expected):
    from server.app import cgroup_cpu_quota

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpu_quota(str(tmp_path)) == expected


def test_a_port_another_service_listens_on_is_refused_not_shared(model_dir):
    with service(model_dir) as (_, url):
        port = url.rsplit(":", 1)[1]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        second = subprocess.run([sys.executable, "-m", "server.cli", "--model-dir", str(model_dir), "--port", port,
                                 "--processes", "2"], env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert f"cannot listen on 127.0.0.1:{port}" in second.stderr
        assert post_score(url).status_code == 200


def test_several_processes_are_refused_off_linux(model_dir, monkeypatch):
    import server.cli as cli

    monkeypatch.setattr(cli.sys, "platform", "darwin")
    assert process_count(Settings(model_dir=model_dir), torch.device("cpu")) == 1
    with pytest.raises(InputError, match="need Linux"):
        process_count(Settings(model_dir=model_dir, processes=2), torch.device("cpu"))


def test_the_supervisor_refuses_to_fork_beside_another_thread(tmp_path):
    script = (
        "import sys, threading, time\n"
        "from pathlib import Path\n"
        "from server.processes import Supervisor, hold_port\n"
        "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
        "try:\n"
        "    Supervisor(2, hold_port('127.0.0.1', 0), Path(sys.argv[1]), lambda c, s: None, 1.0).run()\n"
        "except RuntimeError as e:\n"
        "    print(e)\n"
        "    sys.exit(7)\n")
    done = _run_script(script, tmp_path)
    assert done.returncode == 7 and "OS threads before forking" in done.stdout


def test_holding_port_zero_gives_a_free_port_that_a_plain_bind_is_refused():
    from server.processes import hold_port

    held = hold_port("127.0.0.1", 0)
    try:
        port = held.getsockname()[1]
        assert port > 0
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", port))
    finally:
        held.close()


def test_a_killed_process_leaves_no_readiness_behind_for_a_reused_pid(tmp_path):
    # each child marks itself ready and is killed outright (no chance to clear its own file)
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from server.processes import Supervisor, enable_multiprocess_metrics, listening_socket\n"
        "directory = Path(sys.argv[1])\n"
        "enable_multiprocess_metrics(directory / 'metrics')\n"
        "def serve(cluster, sock):\n"
        "    cluster.mark_ready()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "sys.exit(Supervisor(2, listening_socket('127.0.0.1', 0), directory, serve, 1.0).run())\n")
    done = _run_script(script, tmp_path)
    assert done.returncode == 1, done.stderr
    assert "was killed by signal 9" in done.stderr
    assert list((tmp_path / "ready").iterdir()) == []  # the supervisor cleared each slot as it reaped it


def test_two_services_starting_together_cannot_both_hold_one_port():
    from server.processes import hold_port, port_lock

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lock = port_lock(port)  # a service between its probe and its group's bind
    try:
        with pytest.raises(OSError, match=f"another rescorer-server is starting on it.*{port}"):
            hold_port("127.0.0.1", port)
    finally:
        lock.close()
    held = hold_port("127.0.0.1", port)  # free again
    try:
        with pytest.raises(OSError, match="another rescorer-server"):
            port_lock(port)
    finally:
        held.close()
    port_lock(port).close()  # closing the held port released its lock


def test_shutdown_survives_children_that_are_already_gone(tmp_path):
    from server.processes import Supervisor

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # exited and reaped: neither kill nor waitpid can find it
    (tmp_path / "ready").mkdir()
    (tmp_path / "ready" / "0").write_text(str(gone.pid))
    supervisor = Supervisor(1, socket.socket(), tmp_path, lambda c, s: None, 0.0)
    supervisor.children[gone.pid] = 0
    supervisor._shutdown()
    assert supervisor.children == {} and list((tmp_path / "ready").iterdir()) == []
