"""The runs of ``runners.expandnets``: their specs, their executor, the "product L2" penalty, norms, probes.

Every trained net is a :class:`~runners._engine.specs.RunSpec` (``mode``, ``l2`` and ``seed`` in its
attributes) trained by :class:`ExpandNetsRun` through the engine's pool, resume rule and file layout
(``checkpoints/<run>/compressed.pt``, ``state/<run>.pt``). Per epoch its history adds to the loop's
columns the minimum and mean pairwise cosine of mini-batch gradients (``landscape.gradient_cosines``)
and the squared norms of the trained and of the compressed parameters.

The product L2 of ExpandNets (Fig. 7) penalises the compressed parameters,
:math:`\\frac{\\lambda}{2}\\sum_c\\lVert\\theta_c(\\theta)\\rVert^2`, a function of the whole chain.
The shared training loop minimises cross-entropy plus the optimizer's own weight decay only, so the
penalty enters through the model: :func:`penalised` wraps the net so that its logits carry the
penalty's gradient -- forward returns the logits untouched, backward adds
:math:`\\nabla_\\theta P` to whatever gradient reaches the logits. One loss, one backward: each step
then follows :math:`\\nabla(\\ell + P)`, exactly as if ``P`` had been added to the loss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import h5py
import numpy as np
import torch
from torch import nn

from embeddings import compress, compressed_parameters, expand, expanded_layers, product_l2
from landscape import LossSurface, evaluate, gradient_cosines, hessian_eigenvalues, loss_surface
from results import read_attrs, save_checkpoint, summarize
from runners._engine import layout
from runners._engine.data import Dataset
from runners._engine.execute import fresh_cnn
from runners._engine.loop import HISTORY_COLUMNS, train
from runners._engine.specs import Emit, Outcome, RunContext, RunSpec

__all__ = [
    "MODES", "COLUMNS", "run_name", "expandnets_specs", "ExpandNetsRun", "ProductL2", "penalised", "squared_norms",
    "landscape_probes", "seed_summary",
]

MODES = ("compact", "fc", "cl", "ck", "cl+fc", "ck+fc")
COLUMNS = (*HISTORY_COLUMNS, "min_cosine", "mean_cosine", "l2_trained", "l2_compressed")


def run_name(mode: str, l2: str, seed: int) -> str:
    """Group and folder name of a net.

    Example:
        >>> run_name("ck+fc", "normal", 0), run_name("cl", "product", 1)
        ('ck+fc_seed0', 'cl_productl2_seed1')
    """
    return f"{mode}{'_productl2' if l2 == 'product' else ''}_seed{seed}"


def expandnets_specs(*, modes: Sequence[str], kinds: Sequence[str], seeds: Sequence[int], epochs: int, rate: int) -> list[RunSpec]:
    """One run per seed, mode and weight-decay kind (compact nets: normal L2 only).

    Example:
        >>> [s.name for s in expandnets_specs(modes=("compact", "ck"), kinds=("normal", "product"), seeds=(0,), epochs=1, rate=4)]
        ['compact_seed0', 'ck_seed0', 'ck_productl2_seed0']
    """
    return [
        RunSpec(run_name(mode, kind, seed), "cnn", epochs, seed=seed,
                attrs={"mode": mode, "l2": kind, "seed": seed, "protocol_run": run_name(mode, kind, seed).rsplit("_seed", 1)[0],
                       "rate": rate if mode != "compact" else 1})
        for seed in seeds for mode in modes for kind in (("normal",) if mode == "compact" else kinds)
    ]


class _AttachGradient(torch.autograd.Function):
    """Identity on ``output``; backward also sends gradient 1 to ``penalty`` (as if added to the loss)."""

    @staticmethod
    def forward(ctx, output: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
        ctx.penalty_like = (penalty.dtype, penalty.device)
        return output.clone()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dtype, device = ctx.penalty_like
        return grad_output, torch.ones((), dtype=dtype, device=device)


class ProductL2(nn.Module):
    """``net`` whose backward pass adds the gradient of ``coefficient / 2 * product_l2(net)``.

    Only where gradients are recorded (training steps); evaluation under ``no_grad`` is the bare net.
    Its parameters are ``net``'s (names prefixed ``net.``), so an optimizer over it trains ``net``.
    """

    def __init__(self, net: nn.Module, coefficient: float) -> None:
        super().__init__()
        self.net = net
        self.coefficient = float(coefficient)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if not torch.is_grad_enabled():
            return out
        return _AttachGradient.apply(out, 0.5 * self.coefficient * product_l2(self.net))


def penalised(net: nn.Module, coefficient: float) -> ProductL2:
    """Wrap an expanded net for training with product L2 of strength ``coefficient`` (lambda)."""
    if not expanded_layers(net):
        raise ValueError("product L2 needs an expanded net (embeddings.expand); a compact net's product is its own L2")
    return ProductL2(net, coefficient)


@torch.no_grad()
def squared_norms(net: nn.Module) -> tuple[float, float]:
    """``(sum ||theta||^2, sum ||theta_c||^2)`` over the trained and the compressed parameters."""
    trained = float(sum(p.pow(2).sum() for p in net.parameters()))
    if not expanded_layers(net):
        return trained, trained
    return trained, float(sum(p.pow(2).sum() for p in compressed_parameters(net).values()))


def landscape_probes(compact: nn.Module, batches, *, points: int, seed: int) -> tuple[float, LossSurface]:
    """Top Hessian eigenvalue and 1-D loss surface (filter-normalised direction, span 1) of a compact
    or compressed net in eval mode: the paper's flatter-minimum comparison (Figs. 3-4)."""
    compact.eval()
    loss_fn = nn.CrossEntropyLoss()
    top = float(hessian_eigenvalues(compact, loss_fn, batches, k=1, seed=seed)[0])
    return top, loss_surface(compact, loss_fn, batches, dims=1, span=1.0, grid_points=points, seed=seed)


@dataclass(frozen=True)
class ExpandNetsRun:
    """The executor of an ExpandNets run (picklable, like every executor of the pool).

    Attributes:
        rate: expansion rate r.
        expand_classifier: FC modes also expand the last Linear layer.
        cosine_batches: mini-batches sampled per epoch for the pairwise gradient cosines.
        cosine_batch_size: their size (``None``: the training batch size).
        probe_points: points of the final 1-D loss surface (0: no landscape probes).
        probe_examples: training examples the probes average over.
    """

    rate: int
    expand_classifier: bool
    cosine_batches: int
    cosine_batch_size: int | None
    probe_points: int
    probe_examples: int

    def net(self, spec: RunSpec, context: RunContext, data: Dataset) -> nn.Module:
        """The net ``spec`` trains, at initialisation: the compact net, or its expansion."""
        seed = context.seed_of(spec)
        compact = fresh_cnn(context, data.input_shape, data.num_classes, seed)
        if spec.attrs["mode"] == "compact":
            return compact
        return expand(compact, spec.attrs["mode"], rate=self.rate, expand_classifier=self.expand_classifier,
                      generator=torch.Generator().manual_seed(seed))

    def _cosine_batches(self, data: Dataset, context: RunContext, seed: int, epoch: int) -> list:
        size = self.cosine_batch_size or context.config.batch_size
        generator = torch.Generator().manual_seed(1_000_003 * seed + epoch)
        batches = [b for b in data.shuffled_batches(size, generator=generator) if len(b[1]) == size]
        return batches[: self.cosine_batches]

    def __call__(self, spec: RunSpec, context: RunContext, emit: Emit) -> Outcome:
        data, seed, device = context.load(), context.seed_of(spec), context.device
        model = self.net(spec, context, data)
        expanded = spec.attrs["mode"] != "compact"

        def on_epoch(record) -> None:
            # A None loss is cross-entropy (the landscape convention).
            result = gradient_cosines(model, None, self._cosine_batches(data, context, seed, record.epoch))
            trained, compressed = squared_norms(model)
            emit(spec.name, {**record.row(), "min_cosine": result.minimum, "mean_cosine": result.mean,
                             "l2_trained": trained, "l2_compressed": compressed})

        product = spec.attrs["l2"] == "product" and expanded and context.config.weight_decay > 0
        config = dataclasses.replace(context.config, epochs=spec.epochs,
                                     weight_decay=0.0 if product else context.config.weight_decay)
        # Restored rows are not replayed: their cosines need the model of their epoch, and they are in the file.
        result = train(penalised(model, context.config.weight_decay) if product else model, data, config=config, seed=seed,
                       device=device, state_path=context.state_path(spec.name), resume=context.resume,
                       on_epoch=on_epoch, replay=False, progress=context.progress, desc=spec.name)
        if result.diverged_epoch is not None:  # no accuracy and no compressed checkpoint of NaN weights (seed_summary skips it)
            context.state_path(spec.name).unlink(missing_ok=True)
            return Outcome({"status": "diverged", "diverged_epoch": result.diverged_epoch,
                            "num_params": sum(p.numel() for p in model.parameters())})
        model.eval()
        final = gradient_cosines(model, None, self._cosine_batches(data, context, seed, spec.epochs + 1))
        compact = compress(model) if expanded else model
        test = data.batches("test", config.eval_batch_size)
        compressed = evaluate(compact, None, test, device=device)
        with torch.no_grad():
            error = max(float((compact(x.to(device)) - model(x.to(device))).abs().max()) for x, _ in test)
        checkpoint = layout.checkpoint_path(context.out, spec.name, "compressed")
        save_checkpoint(checkpoint, compact, mode=spec.attrs["mode"], l2=spec.attrs["l2"], seed=seed, epoch=spec.epochs,
                        test_acc=compressed.accuracy, data=data.name)
        curves = {"final_cosines": {"pair": np.arange(len(final.cosines)), "cosine": final.cosines.numpy(),
                                    "i": final.pairs[:, 0].numpy(), "j": final.pairs[:, 1].numpy()}}
        probes = {}
        if self.probe_points:
            x, y = data.x_train[: self.probe_examples], data.y_train[: self.probe_examples]
            top, surface = landscape_probes(compact, list(zip(x.split(config.eval_batch_size), y.split(config.eval_batch_size))),
                                            points=self.probe_points, seed=seed)
            curves["surface_1d"] = {"alpha": np.asarray(surface.axes[0]), "train_loss": np.asarray(surface.loss),
                                    "train_acc": np.asarray(surface.accuracy)}
            probes = {"top_hessian_eigenvalue": top}
        context.state_path(spec.name).unlink(missing_ok=True)
        last = result.final
        return Outcome({
            "final_train_loss": last.train_loss, "final_train_acc": last.train_acc, "final_test_loss": last.test_loss,
            "final_test_acc": last.test_acc, "compressed_test_loss": compressed.loss, "compressed_test_acc": compressed.accuracy,
            "compression_error": error, "final_min_cosine": final.minimum, "final_mean_cosine": final.mean,
            "num_params": sum(p.numel() for p in model.parameters()),
            "num_params_compact": sum(p.numel() for p in compact.parameters()),
            # The result file lies in context.out: relative to it is relative to the file's folder.
            "checkpoint": str(checkpoint.relative_to(context.out)), **probes,
        }, curves)


def seed_summary(runs: h5py.Group) -> dict[str, dict]:
    """:func:`results.summarize` over seeds (mean, std, 95% CI, n) of the final numbers of every net (done runs), by mode and L2 kind."""
    table: dict[str, dict[str, list[float]]] = {}
    for name in runs:
        attrs = read_attrs(runs[name])
        if attrs.get("status") != "done":
            continue
        label = attrs["mode"] + ("" if attrs["l2"] == "normal" else "_productl2")
        row = table.setdefault(label, {})
        for key in ("compressed_test_acc", "final_train_acc", "final_min_cosine", "final_mean_cosine", "compression_error",
                    "top_hessian_eigenvalue"):
            if key in attrs:
                row.setdefault(key, []).append(float(attrs[key]))
    return {
        label: {"seeds": len(row["compressed_test_acc"]),
                **{key: asdict(summarize(v)) for key, v in row.items()}}
        for label, row in table.items()
    }
