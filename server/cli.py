"""`rescorer-server`: serve the artifacts under --model-dir over HTTP (127.0.0.1 by default)."""

from __future__ import annotations

import argparse
import os
import sys

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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    values = {k: v for k, v in vars(args).items() if v is not None}
    from rescorer.device import pick_device
    from server.app import create_app
    from server.registry import load_registry

    try:
        settings = Settings(**values)
        # loaded and self-tested before the server starts: bad input is one line and exit 2
        registry = load_registry(settings.model_dir, pick_device(settings.device), settings.precision)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'settings'}: {err['msg']}" for err in e.errors())
        print(f"rescorer-server: error: {problems}", file=sys.stderr)
        return 2
    except InputError as e:
        print(f"rescorer-server: error: {e}", file=sys.stderr)
        return 2
    config = uvicorn_config(create_app(settings, registry), settings.host, settings.port,
                            settings.request_read_timeout_s, settings.max_connections, log_level="info",
                            timeout_graceful_shutdown=int(settings.request_timeout_s) + 5)
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
