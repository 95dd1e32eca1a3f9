"""The whole paper in one command: ``python -m runners.reproduce --out DIR [--quick]``.

Stages, each a thin call of the runner that owns it, each resumable after a kill (``--resume``):

1. ``relax``: the protocol (CNN, switch times t_w, eFCN and eLCN relaxations, vanilla FCN baseline,
   hierarchical CNN -> eLCN(tw1) -> eFCN(tw2) grid) -> ``DIR/relax/results.h5`` + checkpoints;
2. ``weights``: the Fig. 1/2/5 weights copied from the checkpoints into that file;
3. ``interpolation``: linear, string and output-space paths between the final CNN and the eFCNs of
   several t_w -> ``DIR/interpolation.h5``;
4. ``sharpness``: top Hessian eigenvalues, trace and basin width along the CNN's training (its t_w
   snapshots) and at the final models -> ``DIR/sharpness.h5``;
5. ``merge``: one file, ``DIR/results.h5``, with every group of the stage files;
6. ``figures`` and ``report``: ``DIR/figures/*.png|pdf`` and ``DIR/report.md`` with the numbers behind them.

MNIST-1D by default (2 idle CPU cores: ``--quick`` in about 1 minute, the default in about 7);
``--data cifar10 --data-root ROOT --arch vanilla2d`` runs the paper-scale version (use a GPU).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import h5py

from results import ResultError, provenance, read_attrs, rebase_paths, write_attrs
from runners import interpolate as interpolate_cli
from runners import relax as relax_cli
from runners import sharpness as sharpness_cli
from runners._figures import make_figures, write_report
from runners.cli import DATA_SETS, fail
from runners.weights import write_weights

STAGE_FILES = {"relax": Path("relax") / "results.h5", "interpolation": Path("interpolation.h5"), "sharpness": Path("sharpness.h5")}

# (relax flags, interpolation flags, sharpness flags) per mode; the quick mode is for CI and first contact.
SETTINGS = {
    "quick": dict(
        relax=["--epochs", "20", "--relax-epochs", "8", "--t-w", "0,4,20", "--space", "efcn,elcn", "--tw1", "0,4",
               "--tw2", "2"],
        interpolation=["--points", "9", "--string-points", "4", "--string-epochs", "1", "--string-lr", "0.01"],
        sharpness=["--k", "1", "--n-train", "500", "--basin-directions", "2", "--trace-probes", "6", "--tol", "1e-2"],
    ),
    "default": dict(
        relax=["--space", "efcn,elcn"],
        interpolation=["--points", "21", "--string-lr", "0.01"],
        sharpness=["--k", "3", "--n-train", "2000"],
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runners.reproduce", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (stage files, results.h5, figures/, report.md)")
    parser.add_argument("--quick", action="store_true", help="a small version in about 1 minute on 2 CPU cores")
    parser.add_argument("--data", default="mnist1d", choices=DATA_SETS, help="data set")
    parser.add_argument("--data-root", default=None, help="folder holding (or caching) the data set files")
    parser.add_argument("--download", action="store_true", help="allow torchvision to download CIFAR into --data-root")
    parser.add_argument("--arch", default=None, help="architecture of the CNN (default: vanilla1d for sequences, vanilla2d for images)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    parser.add_argument("--interpolate-tw", default=None,
                        help="comma-separated t_w whose eFCN is interpolated with the CNN (default: earliest, middle, latest)")
    parser.add_argument("--resume", action="store_true", help="continue a killed reproduction in --out")
    parser.add_argument("--overwrite", action="store_true", help="start over, replacing what is in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _common(args: argparse.Namespace) -> list[str]:
    flags = ["--data", args.data, "--device", args.device, "--seed", str(args.seed)]
    if args.data_root:
        flags += ["--data-root", args.data_root]
    if args.download:
        flags.append("--download")
    if args.quiet:
        flags.append("--quiet")
    return flags


def _mode_flags(args: argparse.Namespace) -> list[str]:
    return ["--resume"] if args.resume else (["--overwrite"] if args.overwrite else [])


def _banner(stage: str, started: float) -> None:
    print(f"[reproduce {time.perf_counter() - started:6.0f} s] {stage}", flush=True)


def _relax(args: argparse.Namespace, out: Path, settings: dict) -> Path:
    arch = ["--arch", args.arch] if args.arch else []
    relax_cli.main([*settings["relax"], *_common(args), *arch, "--out", str(out / "relax"), *_mode_flags(args)])
    return out / STAGE_FILES["relax"]


def _switch_runs(relax_file: Path) -> list[tuple[int, str]]:
    with h5py.File(relax_file, "r") as store:
        found = [(read_attrs(g)["t_w"], n) for n, g in store["runs"].items()
                 if read_attrs(g).get("space") == "efcn" and "t_w" in g.attrs and "tw1" not in g.attrs]
    return sorted(found)


def _chosen_switch_times(args: argparse.Namespace, available: list[tuple[int, str]]) -> list[tuple[int, str]]:
    if args.interpolate_tw:
        wanted = {int(t) for t in args.interpolate_tw.split(",") if t.strip()}
        chosen = [(t, n) for t, n in available if t in wanted]
        missing = wanted - {t for t, _ in chosen}
        if missing:
            raise fail(f"--interpolate-tw {','.join(map(str, sorted(missing)))}: no eFCN was relaxed at these t_w "
                       f"(available: {','.join(str(t) for t, _ in available)})")
        return chosen
    if len(available) <= 3:
        return available
    return [available[0], available[len(available) // 2], available[-1]]


def _interpolation(args: argparse.Namespace, out: Path, settings: dict, relax_file: Path) -> Path:
    path = out / STAGE_FILES["interpolation"]
    checkpoints = relax_file.parent / "checkpoints"
    for t_w, run in _chosen_switch_times(args, _switch_runs(relax_file)):
        interpolate_cli.main([
            *settings["interpolation"], *_common(args), "--ckpt-a", str(checkpoints / "cnn" / "final.pt"),
            "--ckpt-b", str(checkpoints / run / "final.pt"), "--out", str(path), "--name", f"tw{t_w}", *_mode_flags(args),
        ])
        with h5py.File(path, "a") as store:
            write_attrs(store["interpolation"][f"tw{t_w}"], {"t_w": t_w})
    return path


def _sharpness(args: argparse.Namespace, out: Path, settings: dict, relax_file: Path) -> Path:
    """The CNN's snapshots (its sharpness along training), the vanilla FCN and the interpolated eFCNs."""
    path = out / STAGE_FILES["sharpness"]
    relaxed = [run for _, run in _chosen_switch_times(args, _switch_runs(relax_file))]
    sharpness_cli.main([*settings["sharpness"], *_common(args), "--run-dir", str(relax_file.parent),
                        "--runs", ",".join(["cnn", "fcn", *relaxed]), "--out", str(path), *_mode_flags(args)])
    return path


def merge(stage_files: dict[str, Path], target: Path, *, argv: Sequence[str] | None = None) -> None:
    """Copy every top-level group of the stage files into ``target`` (written aside, then renamed).

    Every result keeps its own provenance and configuration (attributes of its group, written by the
    tool that made it); stored paths are rebased to ``target``'s folder. The root describes the
    merge: the reproduction's provenance and the stage files it was made from.
    """
    partial = target.with_name(target.name + ".partial")
    with h5py.File(partial, "w") as merged:
        write_attrs(merged, {**provenance(argv=argv), "created_by": "runners.reproduce",
                             "stages": {stage: os.path.relpath(path, target.parent) for stage, path in stage_files.items()}})
        for path in stage_files.values():
            if not path.is_file():
                continue
            with h5py.File(path, "r") as source:
                for name in source:
                    source.copy(source[name], merged, name=name)
                    rebase_paths(merged[name], path, target)
    os.replace(partial, target)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    if args.resume and args.overwrite:
        raise fail("--resume and --overwrite contradict each other; choose one")
    if (out / "results.h5").exists() or (out / STAGE_FILES["relax"]).exists():
        if not (args.resume or args.overwrite):
            raise fail(f"{out} already holds a reproduction; pass --resume to continue it or --overwrite to start over")
    settings = SETTINGS["quick" if args.quick else "default"]
    started = time.perf_counter()
    _banner("stage 1/6: relax protocol", started)
    relax_file = _relax(args, out, settings)
    _banner("stage 2/6: weights for Figs. 1, 2, 5", started)
    try:
        write_weights(relax_file.parent, resume=args.resume, overwrite=args.overwrite)
    except ResultError as err:
        raise fail(str(err)) from None
    _banner("stage 3/6: interpolation between the CNN and its eFCNs", started)
    stage_files = {"relax": relax_file, "interpolation": _interpolation(args, out, settings, relax_file)}
    _banner("stage 4/6: sharpness along training and at the final models", started)
    stage_files["sharpness"] = _sharpness(args, out, settings, relax_file)
    _banner("stage 5/6: merge into one HDF5 file", started)
    merge(stage_files, out / "results.h5", argv=sys.argv if argv is None else ["runners.reproduce", *argv])
    _banner("stage 6/6: figures and report", started)
    written, skipped = make_figures(out / "results.h5", out / "figures")
    report = write_report(out / "results.h5", out / "report.md", written, skipped, seconds=time.perf_counter() - started)
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    print(f"results: {out / 'results.h5'}\nfigures: {out / 'figures'} ({len(written)} figures)\nreport:  {report}")
    _banner("done", started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
