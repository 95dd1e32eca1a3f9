"""Side-by-side performance ratios: ``python -m runners.bench {embed,hessian,...,all} [--json]``.

Each benchmark lives in its own module of ``runners/_bench/`` exposing ``add_arguments(parser)``
and ``run(args) -> dict``; the dict is printed as a table or as JSON.
Timings are measured in one process, side by side, and never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from runners._bench import BENCHMARKS

# Flags of `all`: sizes small enough for the whole suite to take a few minutes on 2 CPU cores.
QUICK = {
    "embed": ["--repeats", "2"],
    "hessian": ["--channels", "16", "--n-train", "500", "--epochs", "5", "--repeats", "3"],
    "string": ["--repeats", "5"],
    "interp": ["--n-train", "2000", "--n-test", "500", "--points", "11", "--repeats", "2"],
}


def _print_table(name: str, rows: dict) -> None:
    print(f"== {name} ==")
    width = max(len(key) for key in rows) if rows else 0
    for key, value in rows.items():
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"{key.ljust(width)}  {shown}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    sub = parser.add_subparsers(dest="benchmark", required=True)
    parsers = {}
    for name, module in BENCHMARKS.items():
        parsers[name] = sub.add_parser(name, help=module.__doc__.splitlines()[0])
        module.add_arguments(parsers[name])
    parsers["all"] = sub.add_parser("all", help="every benchmark in turn, each at its small quick sizes (a few minutes on 2 CPU cores)")
    for child in parsers.values():  # --json also after the benchmark's name
        child.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON object instead of tables")
    args = parser.parse_args(argv)
    names = list(BENCHMARKS) if args.benchmark == "all" else [args.benchmark]
    results = {}
    for name in names:
        module = BENCHMARKS[name]
        options = parsers[name].parse_args(QUICK.get(name, [])) if args.benchmark == "all" else args
        options.json = args.json
        started = time.perf_counter()
        results[name] = module.run(options)
        if args.benchmark == "all":
            results[name]["benchmark_s"] = time.perf_counter() - started
        if not args.json:
            _print_table(name, results[name])
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
