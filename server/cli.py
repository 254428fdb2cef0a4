"""`rescorer-server`: serve the artifacts under --model-dir over HTTP (127.0.0.1 by default)."""

from __future__ import annotations

import argparse
import os
import sys

# Before torch is imported: no OpenMP thread pool in the process that forks the serving
# processes (server/processes.py); every process sets its own torch threads in its lifespan
# (--torch-threads), so this is not the service's thread count.
os.environ["OMP_NUM_THREADS"] = "1"

import uvicorn
from pydantic import ValidationError

from rescorer.combination import WEIGHT_NAMES
from rescorer.errors import InputError
from server.connections import uvicorn_config
from server.settings import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rescorer-server", description=__doc__ + " Every option can also be"
                                     " set by an environment variable RESCORER_<NAME> (e.g. RESCORER_TOKEN).")
    fields = Settings.model_fields
    from_env = os.environ.get("RESCORER_MODEL_DIR")
    parser.add_argument("--model-dir", required=from_env is None,
                        help=fields["model_dir"].description + (f" (default: RESCORER_MODEL_DIR, now {from_env})"
                                                                if from_env else " (or RESCORER_MODEL_DIR)"))
    # the service's own options first, the default weights (shared with the library) last
    for name, info in sorted(fields.items(), key=lambda item: item[0] in WEIGHT_NAMES):
        if name == "model_dir":
            continue
        kind = info.annotation
        flag = "--" + name.replace("_", "-")
        text = info.description if "(default" in info.description else f"{info.description} (default: {info.default})"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=f"{info.description} (default: {str(info.default).lower()})")
        else:
            base = {int: int, float: float, str: str}.get(kind)
            if base is None:  # optional fields: int | None, float | None, str | None
                base = next((t for t in (int, float) if t.__name__ in str(kind)), str)
            parser.add_argument(flag, type=base, default=None, help=text)
    return parser


def service_config(app, settings: Settings) -> uvicorn.Config:
    return uvicorn_config(app, settings.host, settings.port, settings.request_read_timeout_s,
                          settings.max_connections, log_level="info", access_log=settings.access_log,
                          timeout_graceful_shutdown=int(settings.request_timeout_s) + 5)


def process_count(settings: Settings, device) -> int:
    """--processes, else one per core on CPU (Linux) and one on CUDA (server/processes.py)."""
    from server.app import available_cores

    if device.type != "cpu":
        if settings.processes not in (None, 1):
            raise InputError(f"--processes {settings.processes} on {device.type}: a service on an accelerator runs"
                             " one process (CUDA cannot be used in forked processes); run one service per GPU")
        return 1
    if not sys.platform.startswith("linux"):
        # SO_REUSEPORT spreads connections over a group only on Linux (elsewhere the last socket
        # bound takes them all), and the serving processes rely on Linux's parent-death signal
        if settings.processes not in (None, 1):
            raise InputError(f"--processes {settings.processes}: several serving processes need Linux")
        return 1
    return settings.processes or available_cores()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    values = {k: v for k, v in vars(args).items() if v is not None}
    import torch

    from rescorer.device import pick_device
    from server.app import create_app
    from server.registry import load_registry

    try:
        settings = Settings(**values)
        device = pick_device(settings.device)
        processes = process_count(settings, device)
        if processes > 1:
            # the supervisor forks after loading: one intra-op thread and no progress-bar monitor
            # thread, so nothing is inherited half-used (each process sets its threads in its lifespan)
            import tqdm

            torch.set_num_threads(1)
            tqdm.tqdm.monitor_interval = 0
        # loaded and self-tested before the server starts: bad input is one line and exit 2
        registry = load_registry(settings.model_dir, device, settings.precision, settings.batch_tokens)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'settings'}: {err['msg']}" for err in e.errors())
        print(f"rescorer-server: error: {problems}", file=sys.stderr)
        return 2
    except InputError as e:
        print(f"rescorer-server: error: {e}", file=sys.stderr)
        return 2
    for name, choice in sorted(registry.batching.items()):
        print(f"rescorer-server: model {name!r}: {'batching' if choice.batch_across_requests else 'not batching'}"
              f" across requests ({choice.reason})", file=sys.stderr, flush=True)
    if processes == 1:
        uvicorn.Server(service_config(create_app(settings, registry), settings)).run()
        return 0
    return serve_processes(settings, registry, processes)


def serve_processes(settings: Settings, registry, processes: int) -> int:
    """`processes` children behind one port, the models loaded once before forking."""
    from server.app import create_app
    from server.processes import (
        Supervisor,
        enable_multiprocess_metrics,
        hold_port,
        listening_socket,
        remove_state_directory,
        state_directory,
    )

    try:
        # the port held, not listened on: each process listens on its own socket of the group
        sock = hold_port(settings.host, settings.port)
    except OSError as e:
        print(f"rescorer-server: error: {e}", file=sys.stderr)
        return 2
    directory = state_directory()
    enable_multiprocess_metrics(directory / "metrics")
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"rescorer-server: {processes} processes on http://{shown}:{port}", file=sys.stderr, flush=True)

    def serve(cluster, held) -> None:
        held.close()
        own = listening_socket(host, port, reuse_port=True)
        uvicorn.Server(service_config(create_app(settings, registry, cluster), settings)).run(sockets=[own])

    try:
        return Supervisor(processes, sock, directory, serve, settings.request_timeout_s).run()
    finally:
        remove_state_directory(directory)


if __name__ == "__main__":
    sys.exit(main())
