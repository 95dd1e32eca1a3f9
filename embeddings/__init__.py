"""Exact embeddings of CNNs into locally-connected (eLCN) and fully-connected (eFCN) spaces.

Public API (see DESIGN.md): the embeddings and their inverse projection, the masks and the distance
from the CNN subspace, memory estimates, the relaxed layers, and the architecture registry.
"""

from .architectures import ARCHITECTURES, AlexNet, VanillaCNN, build_model, register_architecture
from .embed import embed_parameters, fcn_of_same_size, model_space, to_cnn, to_efcn, to_elcn
from .geometry import ConvGeometry
from .layers import EmbeddedDense, LocallyConnected1d, LocallyConnected2d
from .masks import local_masks, mask_blocks, offlocal_ratio
from .memory import MemoryBudgetError, default_max_bytes, estimate_memory

__all__ = [
    # embeddings and projection
    "to_efcn",
    "to_elcn",
    "to_cnn",
    "fcn_of_same_size",
    "embed_parameters",
    "model_space",
    # masks and the distance from the CNN subspace
    "local_masks",
    "offlocal_ratio",
    "mask_blocks",
    # memory
    "estimate_memory",
    "default_max_bytes",
    "MemoryBudgetError",
    # layers
    "ConvGeometry",
    "EmbeddedDense",
    "LocallyConnected1d",
    "LocallyConnected2d",
    # architectures
    "ARCHITECTURES",
    "build_model",
    "register_architecture",
    "VanillaCNN",
    "AlexNet",
]

# --- ExpandNets (issue 8): linear expansion, exact compression, the paper's compact SmallNets ---
from ._expand_layers import ExpandedConv, ExpandedLinear, compose_conv, compose_linear
from .expandnets import ExpandMode, compress, compressed_parameters, expand, expanded_layers, product_l2
from .smallnets import SmallNet

__all__ += [
    "expand",
    "compress",
    "compressed_parameters",
    "expanded_layers",
    "product_l2",
    "ExpandMode",
    "ExpandedConv",
    "ExpandedLinear",
    "compose_conv",
    "compose_linear",
    "SmallNet",
]
