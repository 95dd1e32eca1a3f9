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
    "all_reduce_sum",
    "is_distributed",
    "is_main_process",
    "process_group",
    "rank",
    "reduce_floats",
    "shard",
    "world_size",
]
