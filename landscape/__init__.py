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
