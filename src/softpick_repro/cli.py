"""`softpick-repro` console script: the package's command-line tools under one name.

    softpick-repro cost --configfile config/paper.yaml [--json cost.json]
    softpick-repro stage-in --configfile config/paper.yaml --overlay config/staged.yaml
    softpick-repro offline-fixture [--out resources/offline]
    softpick-repro tokenizer-standin {train,bench} ...

Each subcommand is the module's own `main` (also runnable as `python -m softpick_repro.<module>`).
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "cost": "softpick_repro.cost",
    "stage-in": "softpick_repro.stage_in",
    "offline-fixture": "softpick_repro.offline_fixture",
    "tokenizer-standin": "softpick_repro.tokenizer_standin",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: softpick-repro {{{','.join(COMMANDS)}}} ...", file=sys.stderr)
        return 2
    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
