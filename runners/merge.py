"""Merge the HDF5 files of a sharded sweep: ``python -m runners.merge A.h5 B.h5 ... --out merged.h5``.

The shards of ``runners.relax --shard i/n`` (a job array) each write ``--out/shard-i-of-n/results.h5``;
this writes the file the unsharded command would have written (``results.merge_stores``): every run
once, runs shared by several shards (the CNN) checked equal, checkpoint paths rewritten relative to
the merged file.

    python -m runners.merge runs/relax/shard-*/results.h5 --out runs/relax/results.h5
"""

from __future__ import annotations

import argparse
import sys

from results import merge_stores


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runners.merge", description=__doc__.splitlines()[0])
    parser.add_argument("shards", nargs="+", help="the shards' results.h5 files, in shard order (shared runs are kept from the first)")
    parser.add_argument("--out", required=True, help="the merged HDF5 file (one already holding /runs is refused, unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace the /runs of an existing --out (its other results are kept)")
    parser.add_argument("--rtol", type=float, default=1e-5,
                        help="relative tolerance for runs present in several shards (default: 1e-5)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        names = merge_stores(args.shards, args.out, overwrite=args.overwrite, rtol=args.rtol,
                             argv=sys.argv if argv is None else ["runners.merge", *argv])
    except FileExistsError:
        raise SystemExit(f"error: {args.out} already exists with merged /runs; pass --overwrite to replace them or choose another --out") from None
    except ValueError as err:
        raise SystemExit(f"error: {str(err).splitlines()[0]}") from None
    print(f"merged {len(names)} runs from {len(args.shards)} shards into {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
