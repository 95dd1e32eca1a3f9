"""Loss-landscape probes of a PyTorch model: evaluation, paths, curvature, basins, gradient statistics.

API convention (every public function follows it; a new one must too)

* **Order**: ``f(model, loss_fn, batches, *, ...)``. A function of two endpoints takes them in place of
  ``model`` (``interpolate(model_a, model_b, loss_fn, batches, *, alphas, ...)``); one that computes
  no loss (:func:`predict`, :func:`recalibrate_batchnorm`) or needs no data
  (:func:`filter_normalized_direction`) drops those arguments and keeps the order of the rest;
  :func:`align` computes no loss and reads data only for activation matching, so ``batches`` is a
  keyword there (``align(model_a, model_b, *, method, batches, seed, max_iter)``).
  Everything after ``batches`` is keyword-only. The free algorithms take an operator instead:
  ``f(operator, *, ...)``.
* **loss_fn** is always the second positional argument, with no default: a batch-mean loss
  ``loss_fn(outputs, targets)`` (``reduction="mean"``, so batch means weighted by batch sizes give the
  exact full-data mean), or ``None``, which everywhere means ``nn.CrossEntropyLoss()``.
* **batches** (:data:`Batches`) are ``(x, y)`` tensor pairs that may be iterated more than once; every
  result is an exact full-data average. Under ``torch.distributed`` each probe shards them exactly once
  (:func:`shard`) and all-reduces sums, so every rank returns the single-process result.
* **Parameters** by name (:data:`Params`, ``{name: tensor}`` as ``named_parameters`` names them) are
  passed explicitly (``params=``, ``params_a=``...); no function writes into the model.
* **Randomness**: an ``int`` ``seed`` keyword (default 0) wherever something is drawn; the elastic
  string's is the ``seed`` field of its :class:`StringConfig`, which :func:`interpolate` passes on.
  No ``torch.Generator`` arguments, no global RNG (except dropout masks in :func:`gradient_cosines`'
  ``mode="train"``, which imitate training).
* **Budgets**: ``num_matvecs`` counts operator products and is spent exactly (Hutchinson, Hutch++);
  ``max_iter`` caps the iterations of a method that may stop earlier, each iteration one product
  (Lanczos on its tolerance, SLQ's Lanczos per probe on an exhausted Krylov space); ``steps`` is an
  exact number of iterations of a fixed loop (ε-sharpness ascent, string optimiser steps,
  ``bisection_steps``). ``num_probes`` counts random start vectors (SLQ), ``num_directions``
  random directions, ``num_batches`` mini-batches.
* **One meaning per name**: ``grid_points`` is the number of evaluation points per grid axis (loss
  surfaces, basin-width rays, the SLQ eigenvalue axis); ``num_points`` is only the number of points of
  an elastic string (:class:`StringConfig`, endpoints included); ``alphas`` are the positions where a
  path is evaluated.
* **Operators** satisfy :class:`LinearOperator` (``matvec``, ``matmat``, ``size``/``shape``, ``dtype``,
  ``device``, ``to_scipy()``); :class:`HessianOperator` and :class:`MatrixOperator` do, and the free
  algorithms (:func:`lanczos`, :func:`hutchinson`, :func:`hutch_plus_plus`, :func:`slq`) also accept a
  square tensor or array. Algorithms return frozen dataclasses with their diagnostics;
  :func:`hessian_eigenvalues` and :func:`hessian_trace` are conveniences returning the bare estimate.
* **Finite numbers**: every probe refuses a model with a NaN or infinite parameter or buffer before it
  starts, and a non-finite result is raised as :class:`NonFiniteError` (a ``ValueError``, one line),
  never returned as a value; :func:`interpolate` instead marks the non-finite points of a path
  (``PathResult.nonfinite_alphas``). :func:`check_finite_model` is the check, for callers that want it
  before anything else.
* **Types** shared by the signatures are defined once, in ``landscape._types``, and re-exported here:
  :data:`Batches`, :data:`Params`, :data:`LossFn`, :class:`LinearOperator`.
"""

from landscape.evaluation import (
    Evaluation,
    buffer_dict,
    evaluate,
    flatten_params,
    has_batchnorm,
    param_dict,
    predict,
    recalibrate_batchnorm,
    stack_params,
    unstack_params,
)

# --- paths (issue 5): linear / elastic string / output-space interpolation and path metrics ---
from landscape._endpoints import align_endpoints
from landscape.interpolation import PathResult, interpolate
from landscape.paths import PathMetrics, barrier_height, path_metrics, polyline_length, polyline_point
from landscape.string_method import StringConfig, StringResult, elastic_string

# --- paths between independently trained networks (issue 14): permutation alignment (Git Re-Basin) ---
from landscape.rebasin import AlignResult, align

# --- shared types of every signature (the convention above) ---
from landscape._types import Batches, LinearOperator, LossFn, Params

# --- finite numbers (issue 16): probes refuse non-finite parameters and never return NaN as a value ---
from landscape._checks import NonFiniteError, check_finite_model

# --- curvature (issue 6): Hessian operators on parameter subspaces, Lanczos, traces, densities, basins ---
from landscape.hessian import HessianOperator, MatrixOperator, as_operator
from landscape.lanczos import EigenResult, hessian_eigenvalues, lanczos
from landscape.subspace import ParameterSubspace, parameter_subspace
from landscape.trace import TraceResult, hessian_trace, hutch_plus_plus, hutchinson
from landscape.density import SpectralDensity, hessian_density, slq
from landscape.basin import BasinWidth, EpsilonSharpness, basin_width, epsilon_sharpness, filter_normalized_direction
from landscape.surface import LossSurface, loss_surface

# --- gradient confusion (issue 8, ExpandNets): pairwise cosines of mini-batch gradients ---
from landscape.gradient_stats import GradientCosines, gradient_cosines, pairwise_cosines

# --- progress (issue 14): a bar on a terminal, a line every ~30 s in a log (NEEDLE_PROGRESS_INTERVAL) ---
from landscape._progress import Progress, track

# --- scale (issue 9): data-parallel probes over torch.distributed (no-ops in one process) ---
from landscape.distributed import all_reduce_sum, is_distributed, is_main_process, process_group, rank, reduce_floats, shard, world_size

__all__ = [
    "Evaluation",
    "buffer_dict",
    "evaluate",
    "flatten_params",
    "has_batchnorm",
    "param_dict",
    "predict",
    "recalibrate_batchnorm",
    "stack_params",
    "unstack_params",
    "align_endpoints",
    "PathResult",
    "interpolate",
    "PathMetrics",
    "barrier_height",
    "path_metrics",
    "polyline_length",
    "polyline_point",
    "StringConfig",
    "StringResult",
    "elastic_string",
    "AlignResult",
    "align",
    "Batches",
    "LinearOperator",
    "LossFn",
    "Params",
    "NonFiniteError",
    "check_finite_model",
    "HessianOperator",
    "MatrixOperator",
    "as_operator",
    "EigenResult",
    "hessian_eigenvalues",
    "lanczos",
    "ParameterSubspace",
    "parameter_subspace",
    "TraceResult",
    "hessian_trace",
    "hutch_plus_plus",
    "hutchinson",
    "SpectralDensity",
    "hessian_density",
    "slq",
    "BasinWidth",
    "EpsilonSharpness",
    "basin_width",
    "epsilon_sharpness",
    "filter_normalized_direction",
    "LossSurface",
    "loss_surface",
    "GradientCosines",
    "gradient_cosines",
    "pairwise_cosines",
    "Progress",
    "track",
    "all_reduce_sum",
    "is_distributed",
    "is_main_process",
    "process_group",
    "rank",
    "reduce_floats",
    "shard",
    "world_size",
]
