"""Restore a damaged result file from its last good copy: ``python -m runners.repair FILE.h5``.

Every result file written by a runner keeps ``FILE.h5.good``, a copy taken at its commit points
(results/README.md, "Durability"). When a full disk or a kill at the wrong moment leaves ``FILE.h5``
unreadable, ``--resume`` says so in one line and names this command: it takes the folder's lock,
renames the damaged file to ``FILE.h5.damaged-<UTC time>`` (never deletes it) and puts the copy in its
place; run the command again with ``--resume`` to continue from the copy's points.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from results import OutputLocked, output_lock, restore_store
from runners.cli import fail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.repair", description=__doc__.splitlines()[0])
    parser.add_argument("file", help="the damaged result file (its FILE.good copy is restored)")
    args = parser.parse_args(argv)
    path = Path(args.file)
    try:
        with output_lock(path.parent, argv=sys.argv if argv is None else ["runners.repair", *argv]):
            kept = restore_store(path)
    except (OutputLocked, FileNotFoundError) as err:
        raise fail(str(err)) from None
    except OSError as err:
        raise fail(f"cannot restore {path}: {str(err).splitlines()[0]}; nothing was deleted") from None
    print(f"restored {path} from its good copy" + (f"; the damaged file is kept as {kept}" if kept != path else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
