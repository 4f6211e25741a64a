"""`python -m mixcraft.train CONFIG [--set KEY=VALUE ...]`, the entry point for torchrun:

    torchrun --nproc_per_node=8 -m mixcraft.train recipes/train/prolong-64k.yaml --set train.steps=10
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mixcraft.errors import UserError
from mixcraft.train import run_train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mixcraft.train", description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="trainer YAML (see recipes/train/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.steps=5 (repeatable)")
    args = parser.parse_args(argv)
    try:
        run_train(args.config, args.overrides)
    except UserError as err:
        # Every rank raises the same mistake; say which rank spoke when there are several.
        world = int(os.environ.get("WORLD_SIZE", "1"))
        prefix = f"[rank {os.environ.get('RANK', '0')}] " if world > 1 else ""
        print(f"{prefix}error: {err}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
