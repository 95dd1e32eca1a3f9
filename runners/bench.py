"""Side-by-side performance ratios: ``python -m runners.bench {embed,hessian,...} [--json]``.

Each benchmark lives in its own ``runners/_bench_<name>.py`` module exposing
``add_arguments(parser)`` and ``run(args) -> dict``; the dict is printed as a table or as JSON.
Timings are measured in one process, side by side, and never asserted in tests.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

BENCHMARKS = {
    "embed": "runners._bench_embed",
    "hessian": "runners._bench_hessian",
    "string": "runners._bench_string",
    "interp": "runners._bench_interp",
    "gradcos": "runners._bench_gradcos",
    "distributed": "runners._bench_distributed",
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
    for name, module_name in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        module.add_arguments(sub.add_parser(name, help=module.__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    rows = importlib.import_module(BENCHMARKS[args.benchmark]).run(args)
    if args.json:
        json.dump({args.benchmark: rows}, sys.stdout, indent=2)
        print()
    else:
        _print_table(args.benchmark, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
