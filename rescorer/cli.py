"""`rescorer`: inspect LM artifacts (N-best scoring and rescoring commands build on this)."""

from __future__ import annotations

import argparse
import json
import sys

from rescorer.artifact import ArtifactError, load_artifact


def _cmd_info(args: argparse.Namespace) -> int:
    artifact = load_artifact(args.lm_dir)
    config = artifact.model.config
    summary = {
        "path": str(args.lm_dir), "output_kind": config.output_kind, "log_z": artifact.log_z,
        "vocab_size": len(artifact.vocab), "parameters": sum(p.numel() for p in artifact.model.parameters()),
        "model": config.to_dict(),
        "provenance": {k: v for k, v in artifact.provenance.items() if k != "train_config"},
    }
    print(json.dumps(summary, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rescorer", description="Self-normalized LSTM LM rescoring.")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="verify an artifact and print its config and provenance")
    info.add_argument("lm_dir")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _cmd_info(args)
    except ArtifactError as e:
        print(f"rescorer: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
