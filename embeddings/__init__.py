r"""Exact embeddings of CNNs into locally-connected (eLCN) and fully-connected (eFCN) spaces.

This package owns the parameter spaces of d'Ascoli, Sagun, Biroli & Bruna (NeurIPS 2019) and the
maps between them. A CNN is an FCN with two constraints, locality and weight sharing; the embedding

.. math::

    \Phi : \theta_{\text{CNN}} \mapsto \theta_{\text{eFCN}}, \qquad
    W_{(o, p), (i, q)} = \sum_{t \,:\, q = p s - \text{pad} + t d} K_{o, i, t},

writes every convolution (kernel ``K``, stride ``s``, dilation ``d``, zero padding, groups) as the
dense matrix of the linear map it computes on the *unpadded* flattened input, so that
:math:`f_{\text{CNN}}(x; \theta) = f_{\text{eFCN}}(x; \Phi(\theta))`. :math:`\Phi` is linear and
differentiable (:func:`embed_parameters` applies it inside ``torch.func`` transforms); the eLCN map
keeps locality and drops sharing only (one filter copy per output position), and ``to_efcn`` of an
eLCN is ``to_efcn`` of the CNN. Exactness guarantee: the embedded model computes the same function
to float precision (1e-5 in float32, 1e-10 in float64 in the tests), the embedding adds no
off-local weight (:func:`offlocal_ratio` is 0), and :func:`to_cnn`, the orthogonal projection back
(each shared weight becomes the mean of its copies), gives the CNN back exactly:
``to_cnn(to_efcn(m))`` equals ``m``. Only conv layers change; everything else is kept.

Where each piece lives: ``embed.py`` the maps (``to_efcn``, ``to_elcn``, ``to_cnn``,
``fcn_of_same_size``, ``embed_parameters``, ``model_space``); ``geometry.py`` the receptive-field
geometry every map is a scatter or gather along; ``_blocks.py`` those scatters and gathers;
``layers.py`` the relaxed layers (``EmbeddedDense``, ``LocallyConnected1d/2d``, built by their
constructors or ``from_weight``); ``_tracing.py`` finds the layers to relax and the input shape
each sees with a meta-tensor forward pass; ``memory.py`` counts the result's parameter bytes from
those shapes before anything is built, and guards a budget (``embed.py`` and ``memory.py`` both
depend on ``_tracing.py``, never on each other); ``masks.py`` the local / off-local blocks and the
distance :math:`\delta` from the CNN subspace; ``architectures.py`` and ``smallnets.py`` the model
registry (``build_model`` also takes any factory by import path, ``"torchvision.models:resnet18"``); ``expandnets.py`` with ``_expand_layers.py`` the ExpandNets expansion and its exact
compression (Guo et al., NeurIPS 2020). Everything public is re-exported here, grouped in ``__all__``.
"""

from .architectures import (
    ARCHITECTURES, AlexNet, VanillaCNN, build_model, factory_accepts, import_object, register_architecture, resolve_factory,
)
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
    "resolve_factory",
    "import_object",
    "factory_accepts",
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
