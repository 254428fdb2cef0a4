"""Several scoring processes behind one port: a pre-fork supervisor (CPU).

Why processes: in one process the scoring threads, the event loop and the response-building
pool take turns at one interpreter lock, so on CPU the HTTP work and the scoring cannot use the
cores together (docs/RESULTS.md, "Service under load"). Here the supervisor (the process
`rescorer-server` starts as) loads and self-tests the models once, holds the port (bound, not
listening), and forks `--processes` children, each a complete service (its own event loop,
batcher and scoring threads) listening on its own socket of one SO_REUSEPORT group on that
port, so that the kernel spreads new connections over the processes. The children inherit the
loaded weights: the pages stay shared copy-on-write, as no child writes to a weight, so N
processes cost about one copy of the weights (`bench/peer_serving.py` measures it).

Chosen over the alternatives (measured with bench/peer_serving.py and bench/server_configs.py,
docs/RESULTS.md, "Serving peers"):
- one listening socket shared by every process: whichever process wakes first accepts every
  waiting connection, so a burst of keep-alive connections can land on one process and leave
  the others idle for their whole life (the plain FastAPI peer of bench/peer_serving.py, whose
  uvicorn workers share one socket, ran at 66 % CPU at 8 connections after a single-connection
  point); SO_REUSEPORT assigns each connection to a process as it arrives. Its price:
  connections still waiting in the accept queue of a process that stops are reset (Linux 5.14+
  can hand them to the others: sysctl net.ipv4.tcp_migrate_req=1);
- uvicorn's `--workers` and gunicorn spawn fresh interpreters that each import torch and load
  every model (N copies of the weights, N self-tests) and, for uvicorn, take the application
  as an import string, which cannot carry the settings object.

Fork safety: the supervisor imports torch with one OpenMP thread (server/cli.py) and starts no
thread of its own before forking (checked: it refuses to fork beside another OS thread), so no
thread pool or lock is inherited half-used; each child sets its own torch threads and starts
its batcher in its own lifespan. Before forking, every object so far is frozen out of the
garbage collector (gc.freeze), so the children's collections do not write to, and so copy, the
pages of the objects they inherit.

What the children share, through files in a private directory the supervisor creates and
removes:
- metrics: Prometheus's multi-process mode (`prometheus_client.multiprocess`), so `/metrics`
  from any child is one view of all of them (counters and histograms summed over every child
  that ever ran, the queue gauges summed over the live ones);
- readiness: a child writes `ready/<slot>` (its pid) once its lifespan has started, and
  removes it when it stops; `/readyz` answers 200 only while every slot holds a live pid, so a
  service with a child being replaced is not ready.

Lifecycle: SIGTERM or SIGINT to the supervisor releases the port it holds and sends SIGTERM to
every child, each of which stops accepting, answers what it has accepted, drains its
batcher and exits; the supervisor waits for them (the request timeout plus a margin, then
SIGKILL) and exits 0. A child that dies otherwise is replaced in the same slot. A service
whose children keep dying (more than MAX_RESTARTS in RESTART_WINDOW_S seconds) stops with
exit status 1 rather than fork forever. Children run in their own process group, so a
terminal's Ctrl-C reaches the supervisor alone (which stops them once, gracefully), and ask
the kernel for SIGTERM if the supervisor dies, so none is left serving orphaned.

On CUDA the service runs one process: CUDA cannot be used in a child forked after the parent
has touched it, and one process batching every request into one device call is the point of
a GPU; to use several GPUs run one service per GPU (`CUDA_VISIBLE_DEVICES`).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("rescorer.server")

MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
SHUTDOWN_MARGIN_S = 10.0
LISTEN_BACKLOG = 2048
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Cluster:
    """What a child knows about the service it is part of."""

    directory: Path  # the private state directory (metrics, readiness)
    processes: int
    slot: int

    @property
    def ready_dir(self) -> Path:
        return self.directory / "ready"

    @property
    def metrics_dir(self) -> Path:
        return self.directory / "metrics"

    def mark_ready(self) -> None:
        path = self.ready_dir / str(self.slot)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(str(os.getpid()))
        temporary.replace(path)

    def mark_stopping(self) -> None:
        clear_ready(self.ready_dir, self.slot, os.getpid())

    def all_ready(self) -> bool:
        """Every slot holds a child that has started and is alive."""
        for slot in range(self.processes):
            try:
                pid = int((self.ready_dir / str(slot)).read_text())
            except (FileNotFoundError, ValueError):
                return False
            if not _alive(pid):
                return False
        return True


def clear_ready(ready_dir: Path, slot: int, pid: int) -> None:
    """Remove `slot`'s readiness file if `pid` wrote it: by the child as it stops, and by the
    supervisor when it reaps the child (a child killed outright removes nothing itself, and its
    pid may be reused by an unrelated process that `kill(pid, 0)` would find alive)."""
    path = ready_dir / str(slot)
    with contextlib.suppress(FileNotFoundError):
        if path.read_text() == str(pid):
            path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def os_thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def enable_multiprocess_metrics(directory: Path) -> None:
    """Prometheus's multi-process mode for every metric created from now on in this process
    and its children (the value class is chosen when a metric is created; the directory is
    read when a child first writes)."""
    from prometheus_client import values

    directory.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    values.ValueClass = values.MultiProcessValue()


def hold_port(host: str, port: int) -> socket.socket:
    """The port for a SO_REUSEPORT group, bound and not listening. First bound alone (no
    SO_REUSEPORT), so that a port another server already listens on, this service's included,
    is refused instead of joined: two services on one port would split its connections.

    Between that probe and the group's bind, a second service started at the same moment could
    pass its own probe and join the group; so the port's lock file (`port_lock`) is taken while
    the probe holds the port, and kept for the service's life (the children inherit it): of two
    services started together, the second finds either the port bound or the lock taken."""
    probe = listening_socket(host, port, listen=False)
    try:
        port = probe.getsockname()[1]  # port 0: the free port the kernel chose
        lock = port_lock(port)
    finally:
        probe.close()
    try:
        sock = listening_socket(host, port, reuse_port=True, listen=False)
    except OSError:
        if lock is not None:
            lock.close()
        raise
    held = HeldPort(fileno=sock.detach())
    held.set_inheritable(True)
    held.lock = lock
    return held


class HeldPort(socket.socket):
    """The held socket with the port's lock file, released when it is closed (children that
    inherited the file keep it locked until they exit)."""

    __slots__ = ("lock",)

    def close(self) -> None:
        super().close()
        if getattr(self, "lock", None) is not None:
            self.lock.close()
            self.lock = None


def port_lock(port: int):
    """An exclusive lock on `port` among this machine's services (a file in the temporary
    directory, locked with flock; released when every process holding it has exited). Raises
    OSError naming the port when another service holds it. Where the file belongs to another
    user, no lock is taken: the kernel never puts two users' sockets in one SO_REUSEPORT group."""
    from rescorer.file_lock import try_exclusive_lock

    path = Path(tempfile.gettempdir()) / f"rescorer-server-port-{port}.lock"
    try:
        handle = try_exclusive_lock(path)
    except PermissionError:
        return None
    if handle is None:
        raise OSError(f"cannot listen on port {port}: another rescorer-server is starting on it ({path} is"
                      " locked)")
    return handle


def listening_socket(host: str, port: int, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """A TCP socket bound to host:port; with `reuse_port`, one of a SO_REUSEPORT group (the kernel
    spreads new connections over the group's listening members); without `listen`, bound only:
    it holds the port for the group without taking connections."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror}") from e
    if listen:
        sock.listen(LISTEN_BACKLOG)
    sock.set_inheritable(True)
    return sock


class Supervisor:
    """Forks `processes` children that each run `serve(cluster, sock)`, replaces the ones that
    die, and stops them all gracefully on SIGTERM or SIGINT."""

    def __init__(self, processes: int, sock: socket.socket, directory: Path, serve, shutdown_timeout_s: float) -> None:
        self.processes, self.sock, self.directory = processes, sock, directory
        self.serve, self.shutdown_timeout_s = serve, shutdown_timeout_s
        self.children: dict[int, int] = {}  # pid -> slot
        self.restarts: deque[float] = deque()
        self.stopping = False

    def run(self) -> int:
        threads = os_thread_count()
        if threads > 1:
            raise RuntimeError(f"the supervisor has {threads} OS threads before forking; forking it would hand the"
                               " children locks held by threads that do not exist there (start the service"
                               " with rescorer-server, which imports torch with OMP_NUM_THREADS=1)")
        (self.directory / "ready").mkdir(parents=True, exist_ok=True)
        # every object so far into the collector's permanent generation: a child's collections
        # then never write to these objects' headers, which would copy their pages (copy-on-write)
        gc.freeze()
        previous = {s: signal.signal(s, self._stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in range(self.processes):
                self._fork(slot)
            return self._watch()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _stop(self, signum, frame) -> None:
        self.stopping = True

    def _fork(self, slot: int) -> None:
        supervisor = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the supervisor's code
            code = 1
            try:
                os.setpgid(0, 0)  # a terminal's Ctrl-C goes to the supervisor only
                _die_with_parent()
                if os.getppid() != supervisor:  # it died before the request above took effect
                    os._exit(1)
                for s in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(s, signal.SIG_DFL)
                self.serve(Cluster(self.directory, self.processes, slot), self.sock)
                code = 0
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.children[pid] = slot
        log.info("process %d (pid %d) started", slot, pid)

    def _watch(self) -> int:

        while not self.stopping:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid = 0
            if pid == 0:
                time.sleep(0.1)
                continue
            slot = self.children.pop(pid, None)
            if slot is None:
                continue
            self._reaped(pid, slot)
            if self.stopping:
                break
            now = time.monotonic()
            self.restarts.append(now)
            while self.restarts and now - self.restarts[0] > RESTART_WINDOW_S:
                self.restarts.popleft()
            print(f"rescorer-server: process {slot} (pid {pid}) {_describe(status)}; replacing it",
                  file=sys.stderr, flush=True)
            if len(self.restarts) > MAX_RESTARTS:
                print(f"rescorer-server: error: {len(self.restarts)} processes died within {RESTART_WINDOW_S:g} s;"
                      " stopping the service", file=sys.stderr, flush=True)
                self._shutdown()
                return 1
            self._fork(slot)
        self._shutdown()
        return 0

    def _shutdown(self) -> None:

        self.sock.close()  # the port stays held by the children until each has stopped accepting
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.shutdown_timeout_s + SHUTDOWN_MARGIN_S
        while self.children and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:  # every child already waited for
                break
            if pid == 0:
                time.sleep(0.05)
                continue
            if (slot := self.children.pop(pid, None)) is not None:
                self._reaped(pid, slot)
        for pid, slot in list(self.children.items()):
            print(f"rescorer-server: process (pid {pid}) did not stop in time; killing it", file=sys.stderr, flush=True)
            with contextlib.suppress(ProcessLookupError):  # it may have exited since
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            self.children.pop(pid)
            self._reaped(pid, slot)

    def _reaped(self, pid: int, slot: int) -> None:
        """A child has been waited for: its metrics are marked dead and its readiness cleared."""
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, str(self.directory / "metrics"))
        clear_ready(self.directory / "ready", slot, pid)


def process_tree(pid: int) -> list[int]:
    """`pid` and every process descending from it (Linux /proc), parents before children: the
    service's processes, as the benches and tests measure them."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = [pid], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        tree += children
        frontier = children
    return tree


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by signal {os.WTERMSIG(status)}"
    return f"exited with status {os.WEXITSTATUS(status)}"


def _die_with_parent() -> None:
    """Linux: SIGTERM to this process when the supervisor dies (elsewhere: nothing)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def state_directory() -> Path:
    """A private directory for the children's shared files (mode 0700)."""
    return Path(tempfile.mkdtemp(prefix="rescorer-server-"))


def remove_state_directory(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
