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

# --- curvature (issue 6): Hessian operators on parameter subspaces, Lanczos, traces, densities, basins ---
from landscape.hessian import HessianOperator, MatrixOperator, as_operator
from landscape.lanczos import EigenResult, hessian_eigenvalues, lanczos
from landscape.subspace import ParameterSubspace, parameter_subspace
