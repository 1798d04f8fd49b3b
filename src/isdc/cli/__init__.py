"""`isdc-run`: the command line. Parses, configures, calls the pipeline; nothing else.

Each subcommand lives in its own module of this package with two functions:
`register(subparsers)` adds its parser (with `--help`), and the parser's default `func`
runs it and returns the process exit code (0 only when everything asked for was done).
Modules are found automatically; a module-level `ORDER` number sorts `--help`.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys


def _subcommand_modules():
    mods = []
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            mod = importlib.import_module(f"{__name__}.{info.name}")
            if hasattr(mod, "register"):
                mods.append(mod)
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="isdc-run",
        description="Science-window processing for INTEGRAL (ISDC style): simulate, analyse, verify.",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in _subcommand_modules():
        mod.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("isdc-run: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
