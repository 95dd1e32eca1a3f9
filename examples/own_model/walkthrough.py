"""Your own network and data through the toolkit, end to end: ``python -m examples.own_model.walkthrough --out OUTDIR``.

Run from the repository root (so that ``examples.own_model.mynet:factory`` imports). Every step prints the
command it runs; paste it into a shell to run that step alone. Under a minute on 2 CPU cores with the
defaults; ``--epochs``, ``--width``, ``--n-train``, ``--points`` and ``--string-epochs`` make it bigger.
See README.md beside this file for what each step shows.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shlex
import sys
import time
from pathlib import Path

from examples.own_model import api_tour, make_data

MODEL = "examples.own_model.mynet:factory"
SWITCH = 2  # the CNN epoch the hand-embedded eFCN starts from; also one of the protocol's t_w


def steps(args: argparse.Namespace) -> list[tuple[str, str, list[str]]]:
    """``(title, module, argv)`` of every step, in order."""
    out = args.out
    data = f"npz:{out / 'data.npz'}"
    model = ["--model", MODEL, "--model-kwargs", json.dumps({"width": args.width})]
    common = ["--data", data, *(["--quiet"] if args.quiet else [])]
    again = ["--overwrite"] if args.overwrite else []
    # Adam at 1e-2, not the default 1e-3: in 8 epochs the CNN reached 67% test accuracy at 1e-2 and 38% at 1e-3
    training = [*common, "--lr", "0.01", "--batch-size", "64", *(["--threads", str(args.threads)] if args.threads else []), *again]
    relax_dir, h5 = out / "relax", out / "relax" / "results.h5"
    return [
        ("1. the data set: an .npz of your own (4 classes, length 32)", "examples.own_model.make_data",
         ["--out", str(out / "data.npz"), "--n-train", str(args.n_train), "--n-test", str(args.n_test)]),
        ("2. train your CNN, by import path, saving snapshots", "runners.train",
         [*model, *training, "--epochs", str(args.epochs), "--save-at", f"0,{SWITCH}", "--name", "cnn",
          "--out", str(out / "train")]),
        (f"3. embed its epoch-{SWITCH} snapshot into the eFCN and train that (no --model: the checkpoint rebuilds itself)",
         "runners.train",
         [*training, "--space", "efcn", "--init", str(out / "train" / "checkpoints" / "cnn" / f"epoch_{SWITCH}.pt"),
          "--epochs", str(args.relax_epochs), "--save-at", "0", "--name", "efcn", "--out", str(out / "train")]),
        ("4. the paper's protocol: CNN, eFCNs switched at several t_w, the FCN of the same size", "runners.relax",
         [*model, *training, "--epochs", str(args.epochs), "--relax-epochs", str(args.relax_epochs),
          "--t-w", f"0,{SWITCH},{args.epochs}", "--tw1", "", "--no-matched-controls", "--jobs", "1", "--out", str(relax_dir)]),
        ("5. sharpness along training: every checkpoint, in its own and in the eFCN's coordinates", "runners.sharpness",
         [*common, "--run-dir", str(relax_dir), "--k", "2", "--tol", "1e-2", "--trace-probes", "6",
          "--basin-directions", "1", "--coordinates", "both", *again, "--out", str(h5)]),
        (f"6. paths from the CNN to the eFCN switched at t_w={SWITCH}: linear, string, output", "runners.interpolate",
         [*common, "--ckpt-a", str(relax_dir / "checkpoints" / "cnn" / "final.pt"),
          "--ckpt-b", str(relax_dir / "checkpoints" / f"efcn_tw{SWITCH}" / "final.pt"),
          "--methods", "linear,string,output", "--points", str(args.points), "--string-points", "4",
          "--string-epochs", str(args.string_epochs), "--name", f"cnn_efcn_tw{SWITCH}", *again, "--out", str(h5)]),
        ("7. figures from the one results file", "runners.figures", ["--results", str(h5), "--out", str(out / "figures")]),
        ("8. the same checks and probes from Python", "examples.own_model.api_tour",
         ["--out", str(out), "--switch", str(SWITCH), "--pair", f"efcn_tw{SWITCH}", "--points", str(args.points)]),
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m examples.own_model.walkthrough", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace the results of an earlier walkthrough in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress output from the steps")
    parser.add_argument("--epochs", type=int, default=8, help="CNN epochs (default: 8)")
    parser.add_argument("--relax-epochs", type=int, default=4, help="eFCN epochs after the switch (default: 4)")
    parser.add_argument("--width", type=int, default=8, help="channels of the CNN's convs (default: 8)")
    parser.add_argument("--n-train", type=int, default=512, help="training signals (default: 512)")
    parser.add_argument("--n-test", type=int, default=512, help="test signals (default: 512)")
    parser.add_argument("--points", type=int, default=7, help="alphas per interpolation path (default: 7)")
    parser.add_argument("--string-epochs", type=int, default=1, help="passes of the string method (default: 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the training steps (default: torch's)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run every step in this process (one import of torch), printing each as a shell command."""
    args = build_parser().parse_args(argv)
    if args.epochs <= SWITCH:
        raise SystemExit(f"error: --epochs {args.epochs} must exceed the switch epoch {SWITCH}; pass --epochs 3 or more")
    start = time.perf_counter()
    for title, module, step_argv in steps(args):
        print(f"\n## {title}\n$ python -m {module} {shlex.join(step_argv)}", flush=True)
        result = importlib.import_module(module).main(step_argv)
        if isinstance(result, int) and result != 0:
            raise SystemExit(f"error: step '{title}' exited with {result}; see its output above")
    print(f"\nwalkthrough done in {time.perf_counter() - start:.0f} s: {args.out}/figures, {args.out}/relax/results.h5, "
          f"{args.out}/api.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
