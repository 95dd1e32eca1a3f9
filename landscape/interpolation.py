"""Paths between two networks: linear, elastic string and output-space interpolation (d'Ascoli et al. 2019, Fig. 6).

Three ways to go from network :math:`a` (:math:`\\alpha = 0`) to network :math:`b` (:math:`\\alpha = 1`):

* ``"linear"``: :math:`\\theta(\\alpha) = (1-\\alpha)\\theta_a + \\alpha\\theta_b`, any real :math:`\\alpha`;
* ``"string"``: the polyline through an elastic string relaxed on the training loss
  (:mod:`landscape.string_method`), evaluated densely between its points;
* ``"output"``: no weight-space path at all, the ensemble
  :math:`p(\\alpha) = (1-\\alpha)\\,\\mathrm{softmax} f_a + \\alpha\\,\\mathrm{softmax} f_b`
  (or, with ``output_mode="logits"``, :math:`\\mathrm{softmax}((1-\\alpha) f_a + \\alpha f_b)`), whose
  loss is the cross entropy :math:`-\\log p_y(\\alpha)`.

A CNN endpoint facing an eFCN (or eLCN) endpoint is first embedded exactly into the larger space.
Every point is an exact full-data evaluation (:mod:`landscape.evaluation`); with BatchNorm the running
statistics are recomputed at every point of a weight-space path (``bn_recalibrate``, on by default
when the model has BatchNorm), endpoints included, so the path and its endpoints obey one policy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from landscape._checks import NonFiniteError, check_alphas, check_finite_model, check_mean_loss, check_training_batches
from landscape._endpoints import align_endpoints
from landscape._progress import track
from landscape._types import Batches, LossFn
from landscape.evaluation import Evaluation, buffer_dict, evaluate, has_batchnorm, param_dict, predict, recalibrate_batchnorm, stack_params
from landscape.paths import PathMetrics, path_metrics, polyline_length, polyline_point
from landscape.string_method import StringConfig, StringResult, elastic_string

__all__ = ["PathResult", "interpolate", "CURVE_COLUMNS"]

CURVE_COLUMNS = ("alpha", "train_loss", "train_acc", "test_loss", "test_acc")
OUTPUT_COLUMNS = ("disagree_a", "disagree_b", "kl_a", "kl_b")


@dataclass(frozen=True)
class PathResult:
    """Curves along one path, its endpoints and its metrics.

    Attributes:
        method: ``"linear"``, ``"string"`` or ``"output"``.
        alpha, train_loss, train_acc, test_loss, test_acc: one entry per evaluated alpha (test
            curves are NaN when no test batches were given).
        endpoints: ``{"train_a", "train_b", "test_a", "test_b"}`` :class:`Evaluation` of the endpoints
            under the path's own policy (test entries only with test batches).
        metrics: the :class:`~landscape.paths.PathMetrics`.
        extras: further per-alpha curves; output averaging records ``disagree_a`` / ``disagree_b``
            (fraction of test samples whose predicted class differs from endpoint a's / b's) and
            ``kl_a`` / ``kl_b`` (mean :math:`\\mathrm{KL}(p(\\alpha) \\,\\|\\, p_a)`, nats).
        spaces: the endpoints' spaces before alignment and the common one.
        string: the optimised :class:`~landscape.string_method.StringResult` (method ``"string"``).
        knots: the weight-space polyline, ``{name: (M, *shape)}`` (the two endpoints for ``"linear"``,
            the string's points for ``"string"``, ``None`` for ``"output"``); e.g. for
            :func:`~landscape.paths.polyline_length` over another range of alpha.
        bn_recalibrated: whether BatchNorm statistics were recomputed at every point.
        nonfinite_alphas: the alphas whose train or test loss is NaN or infinite (an extrapolated
            point far outside the endpoints' basin); their accuracies are NaN, not the argmax of NaN
            logits, and the metrics are computed over the other points.
    """

    method: str
    alpha: np.ndarray
    train_loss: np.ndarray
    train_acc: np.ndarray
    test_loss: np.ndarray
    test_acc: np.ndarray
    endpoints: dict[str, Evaluation]
    metrics: PathMetrics
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    spaces: dict[str, str] = field(default_factory=dict)
    string: StringResult | None = None
    knots: dict[str, torch.Tensor] | None = None
    bn_recalibrated: bool = False
    nonfinite_alphas: tuple[float, ...] = ()

    def curves(self) -> dict[str, np.ndarray]:
        """Every per-alpha curve, keyed by column name (``alpha`` first)."""
        return {name: getattr(self, name) for name in CURVE_COLUMNS} | dict(self.extras)


def _measure(model: nn.Module, params, buffers, batches, test_batches, loss_fn, device) -> tuple[Evaluation, Evaluation | None]:
    train = evaluate(model, loss_fn, batches, params=params, buffers=buffers, device=device)
    test = evaluate(model, loss_fn, test_batches, params=params, buffers=buffers, device=device) if test_batches else None
    return train, test


def _row(alpha: float, train: Evaluation, test: Evaluation | None) -> dict[str, float]:
    nan = math.nan
    # The argmax of NaN logits is class 0: an accuracy at a non-finite loss would be a made-up number.
    finite = math.isfinite(train.loss) and (test is None or math.isfinite(test.loss))
    return {
        "alpha": alpha, "train_loss": train.loss, "train_acc": train.accuracy if finite else nan,
        "test_loss": test.loss if test else nan, "test_acc": test.accuracy if test and finite else nan,
    }


def _check_endpoints(ends: dict[str, tuple[Evaluation, Evaluation | None]]) -> None:
    """Finite endpoint losses, or :class:`NonFiniteError`: a path between undefined losses has no barrier or gain."""
    for key, evaluations in ends.items():
        for split, evaluation in zip(("train", "test"), evaluations):
            if evaluation is not None and not math.isfinite(evaluation.loss):
                raise NonFiniteError(f"endpoint {key.upper()}'s {split} loss is {evaluation.loss}; interpolate between models "
                                     "whose losses are finite (a checkpoint saved before training diverged)")


def _check_extrapolated_variances(buffers_a: dict[str, torch.Tensor], buffers_b: dict[str, torch.Tensor], alphas: list[float]) -> None:
    """Refuse alphas at which interpolating BatchNorm's ``running_var`` linearly makes it negative.

    Outside [0, 1] the lerp of two positive variances can cross zero: the normalisation then divides by
    the square root of a negative number and every loss is NaN. Recomputing the statistics at each point
    (``bn_recalibrate=True``) is the answer; clamping would hide that the statistics describe no network.
    """
    for name, var_a in buffers_a.items():
        if not name.endswith("running_var"):
            continue
        for alpha in alphas:
            if bool((torch.lerp(var_a, buffers_b[name], alpha) < 0).any()):
                raise ValueError(f"at alpha={alpha:g} the interpolated BatchNorm variance {name!r} is negative (NaN losses); "
                                 "pass bn_recalibrate=True (CLI: --bn-recalibrate) to recompute the statistics at every point, "
                                 "or keep alphas in [0, 1]")


def _mixture(log_a: torch.Tensor, log_b: torch.Tensor, alpha: float, mode: str) -> torch.Tensor:
    """Log-probabilities of the output-space interpolation at ``alpha`` (log_a, log_b: endpoint logits)."""
    if mode == "logits":
        return torch.log_softmax(torch.lerp(log_a, log_b, alpha), dim=-1)
    weights = torch.tensor([1 - alpha, alpha], dtype=log_a.dtype, device=log_a.device).log()
    stacked = torch.stack([torch.log_softmax(log_a, -1) + weights[0], torch.log_softmax(log_b, -1) + weights[1]])
    return torch.logsumexp(stacked, dim=0)  # log((1-a) p_a + a p_b), exact at a = 0 and a = 1


def _output_rows(model_a, model_b, alphas, batches, test_batches, mode, device, on_point, progress):
    """Output-space averaging: endpoint logits once, then the mixture at every alpha."""
    splits = {"train": batches} | ({"test": test_batches} if test_batches else {})
    logits = {split: (predict(model_a, data, device=device), predict(model_b, data, device=device)) for split, data in splits.items()}
    probe = "test" if test_batches else "train"
    (logits_a, _), (logits_b, _) = logits[probe]
    log_pa, log_pb = torch.log_softmax(logits_a, -1), torch.log_softmax(logits_b, -1)
    pred_a, pred_b = logits_a.argmax(-1), logits_b.argmax(-1)
    rows = []
    for alpha in track(alphas, desc="output", enabled=progress):
        row: dict[str, float] = {"alpha": alpha, "test_loss": math.nan, "test_acc": math.nan}
        for split, ((la, y), (lb, _)) in logits.items():
            log_p = _mixture(la, lb, alpha, mode)
            row[f"{split}_loss"] = float(nn.functional.nll_loss(log_p, y))
            row[f"{split}_acc"] = float((log_p.argmax(-1) == y).double().mean())
        log_p = _mixture(logits_a, logits_b, alpha, mode)
        p = log_p.exp()
        row["disagree_a"] = float((log_p.argmax(-1) != pred_a).double().mean())
        row["disagree_b"] = float((log_p.argmax(-1) != pred_b).double().mean())
        row["kl_a"] = float((p * (log_p - log_pa)).sum(-1).mean())
        row["kl_b"] = float((p * (log_p - log_pb)).sum(-1).mean())
        rows.append(row)
        if on_point is not None:
            on_point(row)
    return rows


def interpolate(
    model_a: nn.Module,
    model_b: nn.Module,
    loss_fn: LossFn,
    batches: Batches,
    *,
    alphas: Sequence[float],
    method: Literal["linear", "output", "string"] = "linear",
    test_batches: Batches | None = None,
    device: torch.device | str | None = None,
    bn_recalibrate: bool | None = None,
    output_mode: Literal["probabilities", "logits"] = "probabilities",
    string: StringConfig | None = None,
    on_point: Callable[[dict[str, float]], None] | None = None,
    progress: bool = False,
    input_shape: Sequence[int] | None = None,
) -> PathResult:
    """Evaluate a path from ``model_a`` (alpha = 0) to ``model_b`` (alpha = 1) on train and test data.

    Args:
        model_a, model_b: the endpoints (the two models in place of the convention's one); models of
            different spaces (CNN, eLCN, eFCN) are brought to the larger space first. Neither is modified.
        loss_fn: a mean-reduced loss; ``None`` for ``nn.CrossEntropyLoss()``. Output averaging always
            scores the mixture by its cross entropy.
        batches: re-iterable training ``(x, y)`` batches (string forces, BatchNorm statistics, train curves).
        alphas: where to evaluate; outside ``[0, 1]`` only for ``"linear"``.
        method: ``"linear"``, ``"string"`` or ``"output"``.
        test_batches: test ``(x, y)`` batches for the test curves (NaN without).
        device: where to compute (default: where model A lives).
        bn_recalibrate: recompute BatchNorm statistics at every weight-space point (default: when the
            model has BatchNorm); off, the endpoints' buffers are interpolated like the weights.
        output_mode: ``"probabilities"`` (ensemble of softmaxes) or ``"logits"``.
        string: :class:`StringConfig` of the elastic string (default: the paper's settings); its
            ``seed`` is the path's only randomness.
        on_point: called with each point's row (``alpha``, ``train_loss``, ... and the extras) as soon
            as it is evaluated, e.g. to append it to a result file.
        progress: show progress (a bar on a terminal, else a line every ~30 s: :mod:`landscape._progress`).
        input_shape: one input without the batch dimension, e.g. ``(3, 32, 32)``; needed only when
            the endpoints' spaces differ and the CNN endpoint must be embedded (default: the
            ``input_shape`` that ``embeddings.build_model`` recorded on it; a one-line error without either).

    Returns:
        A :class:`PathResult`.

    Example:
        >>> model = nn.Linear(3, 2)
        >>> batches = [(torch.randn(8, 3), torch.randint(0, 2, (8,)))]
        >>> flat = interpolate(model, model, None, batches, alphas=[0.0, 0.5, 1.0, 1.5], method="linear")
        >>> float(np.ptp(flat.train_loss)) < 1e-6, flat.metrics.length
        (True, 0.0)
    """
    alpha_values = check_alphas(alphas, method).tolist()
    loss_fn = check_mean_loss(loss_fn)
    batches = check_training_batches(batches)
    test_batches = check_training_batches(test_batches) if test_batches is not None else None
    check_finite_model(model_a)
    check_finite_model(model_b)
    model_a, model_b, spaces = align_endpoints(model_a, model_b, input_shape=input_shape)
    device = torch.device(device) if device is not None else next(model_a.parameters()).device
    recalibrate = has_batchnorm(model_a) if bn_recalibrate is None else bool(bn_recalibrate)
    if method == "output":
        rows = _output_rows(model_a, model_b, alpha_values, batches, test_batches, output_mode, device, on_point, progress)
        ends = {"a": _measure(model_a, None, None, batches, test_batches, loss_fn, device),
                "b": _measure(model_b, None, None, batches, test_batches, loss_fn, device)}
        knots, string_result = None, None
    else:
        ends_params = [param_dict(model_a, device=device), param_dict(model_b, device=device)]
        ends_buffers = [buffer_dict(model_a, device=device), buffer_dict(model_b, device=device)]
        if not recalibrate:
            _check_extrapolated_variances(*ends_buffers, alpha_values)
        string_result = None
        if method == "string":
            string_result = elastic_string(model_a, loss_fn, batches, params_a=ends_params[0], params_b=ends_params[1],
                                           config=string or StringConfig(), device=device, progress=progress)
            knots = string_result.points
        else:
            knots = stack_params(ends_params)

        def buffers_at(alpha: float, params) -> dict[str, torch.Tensor]:
            if recalibrate:
                return recalibrate_batchnorm(model_a, batches, params=params, device=device)
            # Integer buffers (BatchNorm's batch counter) cannot be averaged; endpoint A's are kept.
            return {n: torch.lerp(t, ends_buffers[1][n], alpha) if t.is_floating_point() else t for n, t in ends_buffers[0].items()}

        ends = {}
        for key, alpha, params in (("a", 0.0, ends_params[0]), ("b", 1.0, ends_params[1])):
            ends[key] = _measure(model_a, params, buffers_at(alpha, params), batches, test_batches, loss_fn, device)
        _check_endpoints(ends)
        # Both paths pass through the endpoints exactly at alpha 0 and 1: those points are not evaluated twice.
        measured = {0.0: ends["a"], 1.0: ends["b"]}
        rows = []
        for alpha in track(alpha_values, desc=method, enabled=progress):
            if alpha in measured:
                rows.append(_row(alpha, *measured[alpha]))
            else:
                params = polyline_point(knots, alpha)
                rows.append(_row(alpha, *_measure(model_a, params, buffers_at(alpha, params), batches, test_batches, loss_fn, device)))
            if on_point is not None:
                on_point(rows[-1])
    if method == "output":
        _check_endpoints(ends)
    curves = {name: np.asarray([row[name] for row in rows], dtype=np.float64) for name in rows[0]}
    finite = np.isfinite(curves["train_loss"]) & (np.isfinite(curves["test_loss"]) if test_batches else True)
    if not finite.any():
        raise NonFiniteError(f"the loss is non-finite at every alpha in [{min(alpha_values):g}, {max(alpha_values):g}]; "
                             "evaluate alphas nearer the endpoints")
    endpoints = {f"train_{k}": v[0] for k, v in ends.items()} | {f"test_{k}": v[1] for k, v in ends.items() if v[1] is not None}
    nan = math.nan
    metrics = path_metrics(
        curves["alpha"][finite], curves["train_loss"][finite], curves["test_acc"][finite],
        endpoint_train_loss=(endpoints["train_a"].loss, endpoints["train_b"].loss),
        endpoint_test_acc=(endpoints["test_a"].accuracy, endpoints["test_b"].accuracy) if test_batches else (nan, nan),
        length=polyline_length(knots, min(alpha_values), max(alpha_values)) if knots is not None else nan,
    )
    return PathResult(
        method=method,
        **{name: curves[name] for name in CURVE_COLUMNS},
        endpoints=endpoints,
        metrics=metrics,
        extras={name: curves[name] for name in OUTPUT_COLUMNS if name in curves},
        spaces=spaces,
        string=string_result,
        knots=knots,
        bn_recalibrated=recalibrate and method != "output",
        nonfinite_alphas=tuple(float(a) for a in curves["alpha"][~finite]),
    )
