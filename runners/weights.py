"""Weight pictures for the paper's Figs. 1, 2 and 5, extracted from checkpoints into HDF5.

Figures read HDF5 only, so the weights they show are copied here first:

* ``/weights/fig1``: the eFCN matrix of a 3x3 filter on a 4x4 input, each entry labelled by the
  filter entry it copies (-1 for off-local entries) -- the paper's Fig. 1, computed, not trained;
* ``/weights/fig2/<run>``: the block (first output channel, first input channel) of the first eFCN
  layer, ``embedded`` (right after embedding the CNN snapshot) and ``trained`` (final);
* ``/weights/fig5/<run>``: the row of that layer for the middle output position of channel 0,
  unflattened to the input's shape (``(C, L)``, or ``(C, H, W)`` for 2-D inputs such as ``--data digits``),
  at the same two moments; attributes ``t_w``, ``epochs`` and ``seed``. With several seeds, the runs of
  the lowest seed are copied (and its CNN's snapshots, ``checkpoints/cnn_s<seed>/``).

    python -m runners.weights --run-dir runs/relax        # adds /weights to runs/relax/results.h5

``/weights`` is a result of its own in that file (``results.open_result``): a second run needs
``--overwrite`` (the other results of the file are kept) or ``--resume`` (the same extraction, rewritten).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

from embeddings import EmbeddedDense, to_efcn
from results import ResultError, load_checkpoint, open_result, read_attrs, write_array, write_attrs

__all__ = ["filter_index_matrix", "write_weights"]


def filter_index_matrix(in_size: tuple[int, ...] = (4, 4), kernel_size: int = 3, stride: int = 1, padding: int = 0) -> np.ndarray:
    """eFCN matrix of a single-channel conv whose entries say which filter entry they copy (-1: off-local).

    Example:
        >>> filter_index_matrix((4,), kernel_size=3).tolist()
        [[0, 1, 2, -1], [-1, 0, 1, 2]]
    """
    conv_cls = nn.Conv1d if len(in_size) == 1 else nn.Conv2d
    conv = conv_cls(1, 1, kernel_size, stride=stride, padding=padding, bias=False)
    with torch.no_grad():
        # Filter entry k holds k + 1, so that 0 stays "no filter entry" in the dense matrix.
        conv.weight.copy_(torch.arange(1, conv.weight.numel() + 1, dtype=torch.float32).view_as(conv.weight))
    dense = to_efcn(conv, (1, *in_size)).weight.detach()
    return dense.round().long().numpy() - 1


def _first_layer(model: nn.Module) -> EmbeddedDense:
    return next(m for m in model.modules() if isinstance(m, EmbeddedDense))


def _block(layer: EmbeddedDense) -> np.ndarray:
    g = layer.geometry
    return layer.weight.detach().view(g.out_channels, g.out_positions, g.in_channels, g.in_positions)[0, :, 0, :].numpy()


def _middle_row(layer: EmbeddedDense) -> np.ndarray:
    # The unit at the middle output position of channel 0: its receptive field sits in the middle of the
    # input, so the off-local weights it learns around it show as a template over the whole input.
    return layer.weight.detach()[layer.geometry.out_positions // 2].view(layer.geometry.in_shape).numpy()


def _write(group: h5py.Group, name: str, array: np.ndarray) -> None:
    write_array(group, name, array)  # replaces an earlier one; Fletcher-32 checksum


def write_weights(run_dir: str | Path, *, max_runs: int = 3, resume: bool = False, overwrite: bool = False,
                  argv: Sequence[str] | None = None) -> list[str]:
    """Copy the Fig. 1/2/5 weights of the relax protocol's eFCN runs into the result ``/weights`` of ``run_dir/results.h5``.

    Args:
        run_dir: the relax protocol's folder (``results.h5``; checkpoints under ``checkpoints/``).
        max_runs: how many t_w to keep (earliest, middle, latest), as the paper's three rows.
        resume, overwrite: what to do when the file already holds ``/weights`` (``results.open_result``).
        argv: the command line recorded with the provenance.

    Returns:
        The names of the runs whose weights were written.

    Raises:
        ResultError: ``/weights`` exists and neither flag was given (or the file is in use).
    """
    run_dir = Path(run_dir)
    with open_result(run_dir / "results.h5", "weights", tool="runners.weights", config={"max_runs": max_runs},
                     resume=resume, overwrite=overwrite, argv=argv) as result:
        return _write_weights(result.file, result.group, run_dir, max_runs)


def _write_weights(store: h5py.File, weights: h5py.Group, run_dir: Path, max_runs: int) -> list[str]:
    fig1 = weights.require_group("fig1")
    _write(fig1, "filter_index", filter_index_matrix())
    write_attrs(fig1, {"in_size": [4, 4], "kernel_size": 3, "stride": 1, "padding": 0})
    relaxed = {name: read_attrs(group) for name, group in store.get("runs", {}).items()}
    # With several seeds (runs carry `seed` and `protocol_run`), the figures show one seed: the lowest.
    seed = min((attrs["seed"] for attrs in relaxed.values() if "seed" in attrs), default=None)
    cnn_run = next((name for name, attrs in relaxed.items() if attrs.get("protocol_run", name) == "cnn" and attrs.get("seed") == seed), "cnn")
    runs = sorted((name for name, attrs in relaxed.items() if attrs.get("space") == "efcn" and "t_w" in attrs
                   and "tw1" not in attrs and attrs.get("seed") == seed), key=lambda name: relaxed[name]["t_w"])
    if len(runs) > max_runs:
        runs = [runs[0], runs[len(runs) // 2], runs[-1]]
    written = []
    for name in runs:
        attrs = read_attrs(store["runs"][name])
        snapshot = run_dir / "checkpoints" / cnn_run / f"epoch_{attrs['t_w']}.pt"
        final = run_dir / "checkpoints" / name / "final.pt"
        if not (snapshot.is_file() and final.is_file()):
            continue
        cnn, _ = load_checkpoint(snapshot)
        embedded = _first_layer(to_efcn(cnn))
        trained = _first_layer(load_checkpoint(final)[0])
        for figure, extract in (("fig2", _block), ("fig5", _middle_row)):
            group = weights.require_group(figure).require_group(name)
            _write(group, "embedded", extract(embedded))
            _write(group, "trained", extract(trained))
            write_attrs(group, {"t_w": attrs["t_w"], "epochs": attrs.get("epochs"), "seed": attrs.get("seed")})
        written.append(name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.weights", description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="a runners.relax output folder (results.h5 + checkpoints/)")
    parser.add_argument("--overwrite", action="store_true", help="replace the /weights already in the file (other results are kept)")
    parser.add_argument("--resume", action="store_true", help="rewrite the /weights already in the file (same extraction)")
    args = parser.parse_args(argv)
    path = Path(args.run_dir) / "results.h5"
    if not path.is_file():
        raise SystemExit(f"error: {path} does not exist; run python -m runners.relax --out {args.run_dir} first")
    try:
        written = write_weights(args.run_dir, resume=args.resume, overwrite=args.overwrite,
                                argv=sys.argv if argv is None else ["runners.weights", *argv])
    except ResultError as err:
        raise SystemExit(f"error: {err}") from None
    print(f"weights of {', '.join(written) or 'no eFCN run'} written to {path}:/weights")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
