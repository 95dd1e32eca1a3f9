"""The whole paper in one command: ``python -m runners.reproduce --out DIR [--quick] [--seeds 3]``.

Stages, each a thin call of the runner that owns it, each resumable after a kill (``--resume``):

1. ``relax``: the protocol for every seed (CNN with its matched controls, switch times t_w, eFCN and
   eLCN relaxations, vanilla FCN baseline, hierarchical CNN -> eLCN(tw1) -> eFCN(tw2) grid) ->
   ``DIR/relax/results.h5`` (``/runs``: one seed keeps the names ``cnn``, ``efcn_tw4``; several seeds
   suffix them ``_s<seed>``; ``/aggregates``: mean, std, 95% CI over seeds) + checkpoints;
2. ``weights``: the Fig. 1/2/5 weights copied from the checkpoints into that file;
3. ``interpolation``: linear, string and output-space paths between the final CNN (the snapshot at
   ``--epochs``) and the eFCNs of several t_w, for every seed -> ``DIR/interpolation.h5``
   (``/interpolation/tw<t_w>[_s<seed>]``, attributes ``t_w`` and ``seed``);
4. ``sharpness``: top Hessian eigenvalue, trace and basin width of every seed's CNN snapshots and
   interpolated eFCNs, in their own coordinates and in the eFCN's -> ``DIR/sharpness.h5``;
5. ``expandnets``: ExpandNets (compact net vs its CL / FC / CK expansions, normal and product L2) for
   every seed -> ``DIR/expandnets/expandnets.h5`` (its checkpoints and state beside it);
6. ``merge``: one file, ``DIR/results.h5``, with every result of the stage files (ExpandNets' ``/runs``
   becomes ``/expandnets``), each keeping its provenance, paths rebased; root attributes ``seeds``,
   ``mode`` and ``stage_seconds``;
7. ``figures`` and ``report``: ``DIR/figures/*.png|pdf`` and ``DIR/report.md``.

The time of every stage is printed in a table at the end and stored in ``stage_seconds``.

Budget: <= 30 minutes on 2 idle CPU cores (MNIST-1D, 6000 test sequences), not measured whole (the
machine was shared); estimated from measured pieces. The issue-12 default (32 channels, 1 seed, 1000
test sequences) took 392 s: relax 251, interpolation 23, sharpness 109. Measured on 64-channel
checkpoints (machine at load ~3.5, so an idle machine is taken as 2x faster): an FCN/eFCN epoch costs
2.3x the 32-channel one and a CNN epoch 1.2x (``runners.train``, side by side); one sharpness row of
these settings, CNN in both coordinates 45 s and eFCN 36 s at 1000 examples and 2 basin directions;
one CNN-eFCN interpolation at 11 points, 4000 train / 6000 test examples, 2 string epochs 152 s; the
ExpandNets nets 2-4 s per run-epoch. Estimate of the default (3 seeds), idle:

* relax ~900 s: per seed, in worker-seconds (2 runs train at a time): CNN 80 epochs (60 + the matched
  controls' 20) 55, FCN 60 epochs 145, 7 eFCNs x 20 epochs 335, 2 eLCNs x 20 epochs 60;
* interpolation ~200 s: 2 pairs per seed (t_w 0 and 60), ~34 s each; sharpness ~210 s: per seed 6 CNN
  rows in both coordinates (~9 s) and 2 eFCN rows (~7.5 s); ExpandNets ~150 s (21 runs x 3 epochs);
  weights, merge, figures, report ~50 s. Total ~1500 s (25 min).

What was cut to fit, against the paper and the issue-12 default: switch times 0,4,16,32,60 (not every
power of two), 20 relax epochs (not 30); eLCNs only where the hierarchical grid needs them (tw1 = 0,16
and one tw2 = 16, so every hierarchical eFCN has its equal-budget single relaxation ``efcn_tw<tw1+tw2>``
and its same-switch one ``efcn_tw<tw1>``); interpolation of t_w 0 and 60 only, 7 points, the train-set
metrics and the string's steps on 2000 of the 4000 training sequences, 4 string points, 8 string steps
(the paper: 3 epochs); sharpness of the CNN snapshots and those 2 eFCNs (no FCN), top eigenvalue only
(k = 1, tolerance 1e-2), 500 training examples, 6 trace products, 1 basin direction (both ways);
ExpandNets 3 epochs, 10 mini-batches for the gradient cosines, a 7-point 1-D loss surface. If the
measured run exceeds 30 minutes, cut the FCN's and CNN's --epochs next (the FCN is ~1/4 of relax).

``--quick`` (CI, first contact; 16 channels, ONE seed, so no confidence intervals: the console says
so) stays under 2 minutes. ``--data cifar10 --data-root ROOT --arch vanilla2d`` runs the paper-scale
version (use a GPU).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import h5py

from results import OutputLocked, ResultError, output_lock, provenance, read_attrs, rebase_paths, run_key, write_attrs
from runners import expandnets as expandnets_cli
from runners import interpolate as interpolate_cli
from runners import relax as relax_cli
from runners import sharpness as sharpness_cli
from runners._figures import make_figures, write_report
from runners.cli import DATA_SETS, add_model_arguments, expand_seeds, fail, seeds_arg
from runners.weights import write_weights

STAGE_FILES = {
    "relax": Path("relax") / "results.h5",
    "interpolation": Path("interpolation.h5"),
    "sharpness": Path("sharpness.h5"),
    "expandnets": Path("expandnets") / "expandnets.h5",
}
# Results renamed in the merged file: ExpandNets' /runs would collide with the relax protocol's.
RENAMES = {"expandnets": {"runs": "expandnets"}}

# Flags per mode and stage; "seeds": the number of seeds when --seeds is not given; "switch_times": how many
# t_w per seed are interpolated and probed when --interpolate-tw is not given (earliest to latest).
SETTINGS = {
    "quick": dict(
        seeds=1,
        switch_times=3,
        relax=["--channels", "16", "--epochs", "20", "--relax-epochs", "8", "--t-w", "0,4,20", "--space", "efcn,elcn",
               "--tw1", "0", "--tw2", "4"],
        interpolation=["--points", "9", "--string-points", "4", "--string-epochs", "1"],
        sharpness=["--k", "1", "--n-train", "500", "--basin-directions", "2", "--trace-probes", "6", "--tol", "1e-2",
                   "--coordinates", "both"],
        expandnets=["--modes", "compact,fc,cl,ck", "--l2", "normal,product", "--weight-decay", "5e-4", "--epochs", "1",
                    "--n-train", "1000", "--cosine-batches", "4", "--probe-points", "5", "--probe-examples", "500"],
    ),
    "default": dict(
        seeds=3,
        switch_times=2,
        relax=["--channels", "64", "--epochs", "60", "--relax-epochs", "20", "--t-w", "0,4,16,32,60", "--space", "efcn",
               "--tw1", "0,16", "--tw2", "16"],
        interpolation=["--points", "7", "--n-train", "2000", "--string-points", "4", "--string-steps", "8"],
        sharpness=["--k", "1", "--n-train", "500", "--basin-directions", "1", "--trace-probes", "6", "--tol", "1e-2",
                   "--coordinates", "both"],
        expandnets=["--modes", "compact,fc,cl,ck", "--l2", "normal,product", "--weight-decay", "5e-4", "--epochs", "3",
                    "--cosine-batches", "10", "--probe-points", "7"],
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runners.reproduce", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (stage files, results.h5, figures/, report.md)")
    parser.add_argument("--quick", action="store_true",
                        help="a small version (16 channels, 1 seed) in under 2 minutes on 2 CPU cores")
    parser.add_argument("--data", default="mnist1d", choices=DATA_SETS, help="data set")
    parser.add_argument("--data-root", default=None, help="folder holding (or caching) the data set files")
    parser.add_argument("--download", action="store_true", help="allow torchvision to download CIFAR into --data-root")
    add_model_arguments(parser, default_help="vanilla1d for sequences, vanilla2d for images; passed to runners.relax")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    parser.add_argument("--seed", type=int, default=0, help="first seed; also the seed of the data and of every probe")
    parser.add_argument("--seeds", type=seeds_arg, default=None,
                        help="a count (3 = --seed .. --seed+2) or a list (0,4,7) (default: 3 seeds, 1 with --quick)%(default).0s")
    parser.add_argument("--interpolate-tw", default=None,
                        help="comma-separated t_w whose eFCN is interpolated with the CNN (default: earliest, middle, latest)%(default).0s")
    parser.add_argument("--resume", action="store_true", help="continue a killed reproduction in --out")
    parser.add_argument("--overwrite", action="store_true", help="start over, replacing what is in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _common(args: argparse.Namespace) -> list[str]:
    """Data, device and probe seed of every stage: ``--seed`` (the data and the probes are the same for every seed)."""
    flags = ["--data", args.data, "--device", args.device, "--seed", str(args.seed)]
    if args.data_root:
        flags += ["--data-root", args.data_root]
    if args.download:
        flags.append("--download")
    if args.quiet:
        flags.append("--quiet")
    return flags


def _seed_flags(seeds: Sequence[int]) -> list[str]:
    """``--seeds`` as a list (one seed: none, so the run names stay unsuffixed); ``--seed`` comes from :func:`_common`."""
    return ["--seeds", ",".join(map(str, seeds))] if len(seeds) > 1 else []


def _mode_flags(args: argparse.Namespace) -> list[str]:
    return ["--resume"] if args.resume else (["--overwrite"] if args.overwrite else [])


def _relax(args: argparse.Namespace, out: Path, settings: dict, seeds: Sequence[int]) -> Path:
    arch = ["--model", args.arch] if args.arch else []
    if args.arch_kwargs:
        arch += ["--model-kwargs", json.dumps(args.arch_kwargs)]
    if args.input_shape:
        arch += ["--input-shape", ",".join(map(str, args.input_shape))]
    relax_cli.main([*settings["relax"], *_common(args), *_seed_flags(seeds), *arch, "--out", str(out / "relax"),
                    *_mode_flags(args)])
    return out / STAGE_FILES["relax"]


def _protocol_runs(relax_file: Path, default_seed: int) -> dict[int, dict[str, tuple[str, dict]]]:
    """Per seed, the relax runs by protocol name: ``{seed: {protocol_run: (name in the file, attributes)}}``."""
    by_seed: dict[int, dict[str, tuple[str, dict]]] = {}
    with h5py.File(relax_file, "r") as store:
        for name, group in store["runs"].items():
            attrs = read_attrs(group)
            protocol, seed = run_key(name, attrs, default_seed)
            by_seed.setdefault(seed, {})[protocol] = (name, attrs)
    return dict(sorted(by_seed.items()))


def _chosen_switch_times(args: argparse.Namespace, runs: Mapping[str, tuple[str, dict]], count: int) -> list[int]:
    """The t_w whose eFCN is interpolated and probed: ``--interpolate-tw``, else ``count`` of them from earliest to latest.

    Example:
        >>> runs = {f"efcn_tw{t}": ("", {"space": "efcn", "t_w": t}) for t in (0, 4, 16, 32, 60)}
        >>> args = argparse.Namespace(interpolate_tw=None)
        >>> _chosen_switch_times(args, runs, 2), _chosen_switch_times(args, runs, 3)
        ([0, 60], [0, 16, 60])
    """
    available = sorted(attrs["t_w"] for _, attrs in runs.values()
                       if attrs.get("space") == "efcn" and "t_w" in attrs and "tw1" not in attrs)
    if args.interpolate_tw:
        wanted = {int(t) for t in args.interpolate_tw.split(",") if t.strip()}
        missing = wanted - set(available)
        if missing:
            raise fail(f"--interpolate-tw {','.join(map(str, sorted(missing)))}: no eFCN was relaxed at these t_w "
                       f"(available: {','.join(map(str, available))})")
        return sorted(wanted)
    if len(available) <= count:
        return available
    return sorted({available[round(k * (len(available) - 1) / max(count - 1, 1))] for k in range(count)})


def _final_cnn(checkpoints: Path, cnn: str, attrs: dict) -> Path:
    """The paper's final CNN: the snapshot at ``--epochs`` (the CNN trains on for the matched controls), else final.pt."""
    snapshot = checkpoints / cnn / f"epoch_{attrs.get('reference_epoch', -1)}.pt"
    return snapshot if snapshot.is_file() else checkpoints / cnn / "final.pt"


def _interpolation(args: argparse.Namespace, out: Path, settings: dict, relax_file: Path, seeds: Sequence[int]) -> Path:
    path = out / STAGE_FILES["interpolation"]
    checkpoints = relax_file.parent / "checkpoints"
    for seed, runs in _protocol_runs(relax_file, args.seed).items():
        cnn, cnn_attrs = runs["cnn"]
        for t_w in _chosen_switch_times(args, runs, settings["switch_times"]):
            name = f"tw{t_w}_s{seed}" if len(seeds) > 1 else f"tw{t_w}"
            interpolate_cli.main([
                *settings["interpolation"], *_common(args), "--ckpt-a", str(_final_cnn(checkpoints, cnn, cnn_attrs)),
                "--ckpt-b", str(checkpoints / runs[f"efcn_tw{t_w}"][0] / "final.pt"), "--out", str(path), "--name", name,
                *_mode_flags(args),
            ])
            with h5py.File(path, "a") as store:
                write_attrs(store["interpolation"][name], {"t_w": t_w, "seed": seed})
    return path


def _sharpness(args: argparse.Namespace, out: Path, settings: dict, relax_file: Path) -> Path:
    """Every seed's CNN snapshots (its sharpness along training) and interpolated eFCNs."""
    path = out / STAGE_FILES["sharpness"]
    names = []
    for runs in _protocol_runs(relax_file, args.seed).values():
        chosen = _chosen_switch_times(args, runs, settings["switch_times"])
        names += [runs[run][0] for run in ("cnn", *(f"efcn_tw{t}" for t in chosen))]
    sharpness_cli.main([*settings["sharpness"], *_common(args), "--run-dir", str(relax_file.parent),
                        "--runs", ",".join(names), "--out", str(path), *_mode_flags(args)])
    return path


def _expandnets(args: argparse.Namespace, out: Path, settings: dict, seeds: Sequence[int]) -> Path:
    path = out / STAGE_FILES["expandnets"]
    expandnets_cli.main([*settings["expandnets"], *_common(args), *_seed_flags(seeds), "--out", str(path.parent),
                         *_mode_flags(args)])
    return path


def merge(stage_files: Mapping[str, Path], target: Path, *, argv: Sequence[str] | None = None,
          attrs: Mapping[str, object] | None = None) -> None:
    """Copy every top-level result of the stage files into ``target`` (written aside, then renamed).

    Every result keeps its own provenance and configuration (attributes of its group, written by the
    tool that made it); stored paths are rebased to ``target``'s folder; a result listed in
    :data:`RENAMES` gets its new name (ExpandNets' ``/runs`` becomes ``/expandnets``). The root
    describes the merge: the reproduction's provenance, the stage files it was made from and ``attrs``.

    Raises:
        SystemExit: two stage files hold a result of the same name.
    """
    partial = target.with_name(target.name + ".partial")
    try:
        with h5py.File(partial, "w") as merged:
            write_attrs(merged, {**provenance(argv=argv), "created_by": "runners.reproduce",
                                 "stages": {stage: os.path.relpath(path, target.parent) for stage, path in stage_files.items()},
                                 **(attrs or {})})
            for stage, path in stage_files.items():
                if path.is_file():
                    _copy_results(path, RENAMES.get(stage, {}), merged, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)


def _copy_results(path: Path, renames: Mapping[str, str], merged: h5py.File, target: Path) -> None:
    with h5py.File(path, "r") as source:
        for name in source:
            if name.startswith("."):  # an unfinished --overwrite (/.pending): not a result
                continue
            new = renames.get(name, name)
            if new in merged:
                raise fail(f"result /{new} of {path} is already in {target} (from another stage); rename one of them")
            source.copy(source[name], merged, name=new)
            rebase_paths(merged[new], path, target)


@contextlib.contextmanager
def _stage(times: dict[str, float], number: int, name: str, what: str, started: float) -> Iterator[None]:
    """Announce stage ``number`` and add its wall time to ``times[name]``."""
    print(f"[reproduce {time.perf_counter() - started:6.0f} s] stage {number}/7: {what}", flush=True)
    begin = time.perf_counter()
    try:
        yield
    finally:
        times[name] = times.get(name, 0.0) + time.perf_counter() - begin


def _store_times(results: Path, times: Mapping[str, float]) -> None:
    with h5py.File(results, "a") as store:
        write_attrs(store, {"stage_seconds": dict(times), "total_seconds": sum(times.values())})


def _times_table(times: Mapping[str, float]) -> str:
    rows = [f"{'stage':<14}{'seconds':>9}", *(f"{stage:<14}{seconds:>9.1f}" for stage, seconds in times.items())]
    return "\n".join([*rows, f"{'total':<14}{sum(times.values()):>9.1f}"])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:  # the folder's lock before anything in it is read; the stages take it again (re-entrant) or their own
        with output_lock(args.out, argv=sys.argv if argv is None else ["runners.reproduce", *argv]):
            return _reproduce(args, argv)
    except OutputLocked as err:
        raise fail(str(err)) from None


def _reproduce(args: argparse.Namespace, argv: list[str] | None) -> int:
    out = Path(args.out)
    if args.resume and args.overwrite:
        raise fail("--resume and --overwrite contradict each other; choose one")
    if (out / "results.h5").exists() or (out / STAGE_FILES["relax"]).exists():
        if not (args.resume or args.overwrite):
            raise fail(f"{out} already holds a reproduction; pass --resume to continue it or --overwrite to start over")
    mode = "quick" if args.quick else "default"
    settings = SETTINGS[mode]
    seeds = expand_seeds(args.seeds if args.seeds is not None else settings["seeds"], args.seed)
    args.seed = seeds[0]  # the data, the probes and the one-seed run all use the first seed
    print(f"reproduce ({mode}): {len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({','.join(map(str, seeds))})"
          + ("; ONE seed: no confidence intervals, verdicts are inconclusive by construction" if len(seeds) == 1 else ""))
    times: dict[str, float] = {}
    started = time.perf_counter()
    with _stage(times, 1, "relax", "relax protocol", started):
        relax_file = _relax(args, out, settings, seeds)
    with _stage(times, 2, "weights", "weights for Figs. 1, 2, 5", started):
        try:
            write_weights(relax_file.parent, resume=args.resume, overwrite=args.overwrite)
        except ResultError as err:
            raise fail(str(err)) from None
    stage_files = {"relax": relax_file}
    with _stage(times, 3, "interpolation", "interpolation between every seed's CNN and its eFCNs", started):
        stage_files["interpolation"] = _interpolation(args, out, settings, relax_file, seeds)
    with _stage(times, 4, "sharpness", "sharpness along training and at the final models", started):
        stage_files["sharpness"] = _sharpness(args, out, settings, relax_file)
    with _stage(times, 5, "expandnets", "ExpandNets: compact net vs its expansions", started):
        stage_files["expandnets"] = _expandnets(args, out, settings, seeds)
    results = out / "results.h5"
    with _stage(times, 6, "merge", "merge into one HDF5 file", started):
        merge(stage_files, results, argv=sys.argv if argv is None else ["runners.reproduce", *argv],
              attrs={"mode": mode, "seeds": list(seeds)})
    _store_times(results, times)  # stages 1-6 for the report; the last write adds figures+report
    with _stage(times, 7, "figures+report", "figures and report", started):
        written, skipped = make_figures(results, out / "figures")
        report = write_report(results, out / "report.md", written, skipped, seconds=time.perf_counter() - started)
    _store_times(results, times)
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    print(f"results: {results}\nfigures: {out / 'figures'} ({len(written)} figures)\nreport:  {report}")
    print(f"\nreproduce ({mode}, {len(seeds)} seed{'s' if len(seeds) > 1 else ''}): time per stage\n{_times_table(times)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
