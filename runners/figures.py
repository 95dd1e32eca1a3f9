"""The paper's figures from an HDF5 results file: ``python -m runners.figures --results R.h5 --out DIR``.

Figures read HDF5 only, never retrain. Each is written as PNG and PDF; a figure whose data are not in
the file is skipped with one line naming the command that produces them. ``--claims-md OUT.md`` writes
the claims table with its verdict rule (what the README's "claims, checked" paragraph includes), with or
without ``--out``; ``--alignment-md FILE`` the linear barriers before and after ``runners.interpolate
--align`` (between the ``<!-- alignment-table -->`` markers when FILE has them, as the README does).
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from results import OutputLocked, output_lock
from runners._figures import (FIGURES, DamagedFile, check_claims, claims_markdown, claims_origin, make_figures, open_results,
                              write_alignment_markdown)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.figures", description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, help="HDF5 file written by runners.relax / interpolate / sharpness / reproduce")
    parser.add_argument("--out", default=None, help="folder for the PNG and PDF files (required unless --claims-md)")
    parser.add_argument("--only", default=None, help="comma-separated figure names: " + ", ".join(FIGURES))
    parser.add_argument("--claims-md", default=None, help="also write the claims table and its verdict rule as Markdown to this file")
    parser.add_argument("--alignment-md", default=None,
                        help="also write the barriers before/after alignment (runners.interpolate --align) as a Markdown "
                             "table to this file, between its <!-- alignment-table --> markers if it has them")
    args = parser.parse_args(argv)
    if args.out is None and args.claims_md is None and args.alignment_md is None:
        parser.error("pass --out DIR for the figures, --claims-md OUT.md for the claims table, --alignment-md FILE, or several")
    if not Path(args.results).is_file():
        raise SystemExit(f"error: results file {args.results} does not exist; run python -m runners.reproduce --out DIR first")
    only = [name for name in args.only.split(",") if name] if args.only else None
    unknown = sorted(set(only or ()) - set(FIGURES))
    if unknown:
        raise SystemExit(f"error: unknown figure(s) {', '.join(unknown)}; choose among {', '.join(FIGURES)}")
    try:
        with contextlib.ExitStack() as held:
            if args.out is not None:  # one writer per output folder, like every runner
                held.enter_context(output_lock(args.out))
            if args.claims_md is not None:
                with open_results(args.results) as store:
                    Path(args.claims_md).write_text(claims_markdown(check_claims(store), origin=claims_origin(store, args.results)))
                print(f"wrote the claims table: {args.claims_md}")
            if args.alignment_md is not None:
                try:
                    count = write_alignment_markdown(args.results, args.alignment_md)
                except ValueError as err:
                    raise SystemExit(f"error: {err}") from None
                print(f"wrote the alignment table ({count} pairs): {args.alignment_md}")
            written, skipped = make_figures(args.results, args.out, only=only) if args.out is not None else ({}, {})
    except (DamagedFile, OutputLocked) as err:
        raise SystemExit(f"error: {err}") from None
    except OSError as err:
        raise SystemExit(f"error: cannot read {args.results} as HDF5 ({err})") from None
    for name, paths in written.items():
        print(f"wrote {name}: {', '.join(str(p) for p in paths)}")
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
