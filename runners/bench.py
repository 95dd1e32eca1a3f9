"""Side-by-side performance ratios: ``python -m runners.bench {all,readme,elcn,hessian,...} [--json]``.

``all`` measures issue 15's performance table (every ratio next to its anchor, one thread,
interleaved, load average recorded; :mod:`runners._bench.suite`), ``--save docs/bench.json`` keeps
it and ``readme`` rewrites the README's performance section from such a file. Each other subcommand
is one benchmark module of ``runners/_bench/`` exposing ``add_arguments(parser)`` and
``run(args) -> dict``; the dict is printed as a table or as JSON. Timings are measured in one
process, side by side, and never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from runners._bench import BENCHMARKS, render_markdown, rewrite_readme, suite
from runners.cli import fail


def _print_table(name: str, rows: dict) -> None:
    print(f"== {name} ==")
    width = max(len(key) for key in rows) if rows else 0
    for key, value in rows.items():
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"{key.ljust(width)}  {shown}")


def _readme(args: argparse.Namespace) -> int:
    try:
        report = json.loads(args.source.read_text())
    except (OSError, ValueError) as error:
        raise fail(f"cannot read the bench table {args.source}: {error}; write one with "
                   "`python -m runners.bench all --save docs/bench.json`") from None
    try:
        rewrite_readme(args.readme, report)
    except (OSError, ValueError) as error:
        raise fail(str(error)) from None
    print(f"{args.readme}: performance table rewritten from {args.source}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    sub = parser.add_subparsers(dest="benchmark", required=True)
    parsers = {}
    for name, module in BENCHMARKS.items():
        parsers[name] = sub.add_parser(name, help=module.__doc__.splitlines()[0])
        module.add_arguments(parsers[name])
    parsers["all"] = sub.add_parser("all", help=suite.__doc__.splitlines()[0])
    suite.add_arguments(parsers["all"])
    readme = sub.add_parser("readme", help="rewrite the README's performance table from a saved `bench all` JSON file")
    readme.add_argument("--from", dest="source", type=Path, default=Path("docs/bench.json"), help="the table (default docs/bench.json)")
    readme.add_argument("--readme", type=Path, default=Path("README.md"), help="the README to rewrite (default README.md)")
    for child in parsers.values():  # --json also after the benchmark's name
        child.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON object instead of tables")
    args = parser.parse_args(argv)
    if args.benchmark == "readme":
        return _readme(args)
    if args.benchmark == "all":
        report = suite.run_all(args)
        print(json.dumps(report, indent=2) if args.json else render_markdown(report))
        return 0
    rows = BENCHMARKS[args.benchmark].run(args)
    if args.json:
        print(json.dumps({args.benchmark: rows}, indent=2))
    else:
        _print_table(args.benchmark, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
