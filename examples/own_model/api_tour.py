"""The walkthrough's Python-API part: the checks and probes the CLIs ran, done by hand on their checkpoints.

``python -m examples.own_model.api_tour --out OUTDIR`` (after the CLI steps of ``walkthrough``) reads the
checkpoints under ``OUTDIR`` and writes ``OUTDIR/api.json``:

* ``embed_max_abs_diff``: ``to_efcn`` of the trained CNN against the CNN, in float64, on the test inputs
  (the embedding is exact: expect ~1e-15);
* ``switch_max_abs_diff`` and ``switch_delta``: the eFCN that ``runners.train --space efcn --init`` saved
  at its epoch 0 against the CNN snapshot it was embedded from (same function, no off-local weight);
* ``top_eigenvalues_cnn`` / ``top_eigenvalues_efcn``: ``landscape.hessian_eigenvalues`` of the CNN in its
  own weight-shared coordinates and of its embedding (same function, other coordinates, other Hessian);
* ``linear_alpha`` / ``linear_train_loss`` / ``linear_barrier``: ``landscape.interpolate`` (linear) between
  the protocol's final CNN and its eFCN, the curve ``runners.interpolate`` stored for the same pair.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch

from embeddings import offlocal_ratio, to_efcn
from landscape import hessian_eigenvalues, interpolate
from results import load_checkpoint


def _arrays(path: Path) -> dict[str, torch.Tensor]:
    with np.load(path) as data:
        return {key: torch.from_numpy(data[key]) for key in ("x_train", "y_train", "x_test", "y_test")}


def _max_abs_diff(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> float:
    """Largest output difference of two models on ``x``, both evaluated in float64."""
    a, b = (copy.deepcopy(model).double().eval() for model in (a, b))
    with torch.no_grad():
        return float((a(x.double()) - b(x.double())).abs().max())


def tour(out: Path, *, switch: int, pair: str, points: int) -> dict[str, object]:
    """Run the API checks on the checkpoints of a finished walkthrough in ``out`` and return the numbers."""
    data = _arrays(out / "data.npz")
    batches = [(data["x_train"], data["y_train"])]  # one batch: the full-data average, as the CLIs compute it

    cnn, _ = load_checkpoint(out / "relax" / "checkpoints" / "cnn" / "final.pt")  # rebuilt from its import path
    efcn = to_efcn(cnn)  # the input shape comes from the checkpoint (the factory recorded it)
    summary: dict[str, object] = {"embed_max_abs_diff": _max_abs_diff(cnn, efcn, data["x_test"])}

    snapshot, _ = load_checkpoint(out / "train" / "checkpoints" / "cnn" / f"epoch_{switch}.pt")
    switched, _ = load_checkpoint(out / "train" / "checkpoints" / "efcn" / "epoch_0.pt")
    summary["switch_delta"] = offlocal_ratio(switched)
    summary["switch_max_abs_diff"] = _max_abs_diff(snapshot, switched, data["x_test"])

    summary["top_eigenvalues_cnn"] = hessian_eigenvalues(cnn, None, batches, k=2, tol=1e-2, seed=0).tolist()
    summary["top_eigenvalues_efcn"] = hessian_eigenvalues(to_efcn(cnn), None, batches, k=2, tol=1e-2, seed=0).tolist()

    trained_efcn, _ = load_checkpoint(out / "relax" / "checkpoints" / pair / "final.pt")
    path = interpolate(cnn, trained_efcn, None, batches, alphas=np.linspace(0.0, 1.0, points).tolist(), method="linear",
                       test_batches=[(data["x_test"], data["y_test"])])
    summary.update(linear_alpha=path.alpha.tolist(), linear_train_loss=path.train_loss.tolist(),
                   linear_barrier=float(path.metrics.barrier))
    return summary


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Write ``--out/api.json`` and print its numbers."""
    parser = argparse.ArgumentParser(prog="python -m examples.own_model.api_tour", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the walkthrough's output folder")
    parser.add_argument("--switch", type=int, default=2, help="the CNN epoch the hand-embedded eFCN started from (default: 2)")
    parser.add_argument("--pair", default="efcn_tw2", help="the protocol's eFCN run interpolated with the CNN (default: efcn_tw2)")
    parser.add_argument("--points", type=int, default=7, help="alphas of the linear path (default: 7)")
    args = parser.parse_args(argv)
    summary = tour(args.out, switch=args.switch, pair=args.pair, points=args.points)
    (args.out / "api.json").write_text(json.dumps(summary, indent=1))
    print(f"to_efcn(cnn) vs cnn, float64: max |difference| {summary['embed_max_abs_diff']:.1e}")
    print(f"eFCN at the switch vs CNN epoch {args.switch}: max |difference| {summary['switch_max_abs_diff']:.1e}, "
          f"delta {summary['switch_delta']:.1e}")
    print(f"top Hessian eigenvalues: CNN coordinates {summary['top_eigenvalues_cnn']}, eFCN coordinates "
          f"{summary['top_eigenvalues_efcn']}")
    print(f"linear path CNN -> {args.pair}: train-loss barrier {summary['linear_barrier']:.4f}")
    return summary


if __name__ == "__main__":
    main()
