"""Architecture registry: models are rebuilt by name, or by import path, and keyword arguments.

Checkpoints store ``arch`` and ``arch_kwargs`` only, so every model must be reproducible from
JSON-like keyword arguments. ``arch`` is a name registered here or an import path
``"package.module:factory"`` (any callable returning an ``nn.Module``, e.g.
``"torchvision.models:resnet18"``): an import path is resolved afresh by every process, so a
checkpoint of a user's own model rebuilds itself where a ``register_architecture`` call made in
another process would be unknown. The paper's nets:

* ``vanilla1d`` / ``vanilla2d`` -- the VanillaCNN: three convolutions of 64 channels (kernels 4/5/3
  with max-pooling in 2-D, as in d'Ascoli et al.'s code; kernels 5/3/3 with strides 1/2/2 in 1-D for
  MNIST-1D) and a linear classifier.
* ``alexnet`` -- AlexNet for 32x32 inputs: five convolutions 64/192/384/256/256 with max-pooling,
  then 256 -> 512 -> 512 -> classes with dropout.
* ``mlp`` -- a plain multi-layer perceptron, for sanity baselines.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "ARCHITECTURES", "build_model", "register_architecture", "resolve_factory", "import_object", "factory_accepts", "VanillaCNN",
    "AlexNet",
]

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}


def register_architecture(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a model factory under ``name`` so that checkpoints can rebuild it.

    Factories take keyword arguments only, and one of them must be ``input_shape`` (with a default).
    A registration lives in its process only, so a model built by a name registered outside this
    package records its factory's import path as ``.arch`` (``"mypkg.models:mynet"``): its
    checkpoints rebuild in a fresh process that never ran the registration. A factory defined in
    ``__main__`` has no such path; give it a module (or pass its import path to :func:`build_model`).
    """

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is already registered")
        if ":" in name:
            raise ValueError(f"architecture name {name!r} must not contain ':', which marks an import path")
        ARCHITECTURES[name] = factory
        return factory

    return decorator


def import_object(path: str) -> Any:
    """The object an import path ``"package.module:attr[.attr]"`` names (a model factory, a data loader, a loss).

    The module is imported as Python imports any (``sys.path``: the current folder under ``python -m``,
    and ``PYTHONPATH``), so a user's own file works without being installed.

    Raises:
        ValueError: one line: a path without both parts, a module that cannot be imported (or that
            fails while importing), or a missing attribute.

    Example:
        >>> import_object("math:pi") > 3
        True
    """
    module_name, colon, attribute = path.partition(":")
    if not (colon and module_name.strip() and attribute.strip()):
        raise ValueError(f"import path {path!r} needs both parts, 'package.module:name' (e.g. torchvision.models:resnet18)")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"cannot import module {module_name!r} of {path!r} ({_first_line(err)}); check the spelling, "
                         "that it is installed, and that its folder is on PYTHONPATH") from None
    except Exception as err:  # the user's module failed while importing: say so in one line
        raise ValueError(f"importing module {module_name!r} of {path!r} raised {type(err).__name__}: {_first_line(err)}") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(f"module {module_name!r} has no attribute {attribute!r}; check the name after ':'")
        target = getattr(target, part)
    return target


def resolve_factory(arch: str) -> Callable[..., nn.Module]:
    """The factory of a registry name or of an import path ``"package.module:attr[.attr]"``.

    Raises:
        ValueError: one line: unknown name, module that cannot be imported, missing attribute, or
            an attribute that is not callable.

    Example:
        >>> resolve_factory("torch.nn:Linear") is torch.nn.Linear
        True
    """
    if not isinstance(arch, str) or not arch:
        raise ValueError(f"a model is a registry name or an import path 'package.module:factory', got {arch!r}")
    if arch in ARCHITECTURES:
        return ARCHITECTURES[arch]
    if ":" not in arch:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"unknown architecture {arch!r}; expected one of: {known}, or an import path 'package.module:factory'")
    target = import_object(arch)
    if not callable(target):
        raise ValueError(f"{arch!r} is not callable (it is of type {type(target).__name__}); point the import path at a factory returning an nn.Module")
    return target


def factory_accepts(arch: str, name: str, *, explicit: bool = False) -> bool:
    """Whether the factory of ``arch`` takes the keyword ``name`` (``explicit``: as a named parameter, not via ``**kwargs``).

    Example:
        >>> factory_accepts("vanilla1d", "channels"), factory_accepts("torchvision.models:resnet18", "input_shape", explicit=True)
        (True, False)
    """
    try:
        parameters = inspect.signature(resolve_factory(arch)).parameters
    except (TypeError, ValueError):  # builtins without a signature: assume they take what they are given
        return not explicit
    if name in parameters and parameters[name].kind not in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL):
        return True
    return not explicit and any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def build_model(arch: str, **arch_kwargs: Any) -> nn.Module:
    """Build a registered architecture or the model returned by an import path's factory.

    ``input_shape`` (one input without the batch dimension) is forwarded only to a factory that has
    a parameter of that name; for any other it is recorded on the model, not passed, so that the
    embeddings and checkpoints know it (``torchvision.models:resnet18`` takes no input shape).

    Args:
        arch: a registry name (``"vanilla1d"``) or an import path ``"package.module:factory"``.
        **arch_kwargs: JSON-like keyword arguments of the factory (and ``input_shape``).

    Returns:
        The model, carrying ``.arch`` (``arch`` as given; for a name registered outside this package,
        its factory's import path), ``.arch_kwargs``, ``.input_shape`` (a
        tuple, or ``None`` when neither given nor a default of the factory) and ``.space = "cnn"``.

    Raises:
        ValueError: one line: unknown name, bad import path, arguments the factory does not take,
            a factory that raised, or one that returned something other than an ``nn.Module``.

    Example:
        >>> model = build_model("vanilla1d", channels=8)
        >>> model(torch.zeros(2, 1, 40)).shape
        torch.Size([2, 10])
        >>> net = build_model("torchvision.models:resnet18", num_classes=10, input_shape=(3, 16, 16))
        >>> net.input_shape, net(torch.zeros(2, 3, 16, 16)).shape
        ((3, 16, 16), torch.Size([2, 10]))
    """
    factory = resolve_factory(arch)
    forward_shape = factory_accepts(arch, "input_shape", explicit=True)
    call_kwargs = {k: v for k, v in arch_kwargs.items() if forward_shape or k != "input_shape"}
    try:
        inspect.signature(factory).bind(**call_kwargs)
    except TypeError as err:
        raise ValueError(f"architecture {arch!r} does not accept arguments {call_kwargs}: {err}; check --model-kwargs") from None
    except ValueError:  # no signature to check against: calling it will tell
        pass
    try:
        model = factory(**call_kwargs)
    except TypeError as err:  # a value of the wrong type, e.g. channels="wide"
        raise ValueError(f"architecture {arch!r} does not accept arguments {call_kwargs}: {_first_line(err)}") from None
    except Exception as err:
        if arch in ARCHITECTURES:  # the registry's nets raise one-line ValueErrors (and RuntimeErrors on too-small inputs)
            raise
        # the user's code: any failure is one line naming the factory
        raise ValueError(f"{arch}({_format_kwargs(call_kwargs)}) raised {type(err).__name__}: {_first_line(err)}") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"{arch!r} returned an object of type {type(model).__name__}, not an nn.Module; point the import path at a model factory")
    input_shape = arch_kwargs.get("input_shape", _default(factory, "input_shape"))
    # Recorded on the module so that checkpoints (results.save_checkpoint) can rebuild it by name or path.
    model.arch = _portable_name(arch, factory)
    model.arch_kwargs = dict(arch_kwargs)
    model.input_shape = None if input_shape is None else tuple(int(s) for s in input_shape)
    model.space = "cnn"
    return model


def _portable_name(arch: str, factory: Callable[..., Any]) -> str:
    """``arch``, or the import path of a factory registered from outside this package (known to every process)."""
    module, qualname = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    if arch not in ARCHITECTURES or module is None or module == "__main__" or "<" in qualname:
        return arch
    if module == __name__ or module.startswith(__name__.rpartition(".")[0] + "."):
        return arch
    return f"{module}:{qualname}"


def _default(factory: Callable[..., Any], name: str) -> Any:
    try:
        parameter = inspect.signature(factory).parameters.get(name)
    except (TypeError, ValueError):
        return None
    return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _format_kwargs(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in kwargs.items())


def _as_tuple(values: int | Sequence[int], count: int, what: str) -> tuple[int, ...]:
    if isinstance(values, int):
        return (values,) * count
    values = tuple(int(v) for v in values)
    if len(values) != count:
        raise ValueError(f"{what} needs {count} entries (one per conv layer), got {values}")
    return values


def _flat_size(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return int(module(torch.zeros(1, *input_shape)).numel())


class VanillaCNN(nn.Module):
    """Convolutions with ReLU (and optional max-pooling) followed by one linear classifier.

    Args:
        dim: 1 for sequences ``(C, L)``, 2 for images ``(C, H, W)``.
        input_shape: input shape without the batch dimension.
        num_classes: number of output logits.
        channels: width of every conv layer (the paper uses 64).
        kernel_sizes, strides, paddings: one entry per conv layer.
        pool: max-pooling (kernel 3, stride 2) after each conv, as in the paper's 2-D VanillaCNN.
        bias: whether convolutions carry biases.
    """

    def __init__(
        self,
        *,
        dim: int,
        input_shape: Sequence[int],
        num_classes: int = 10,
        channels: int = 64,
        kernel_sizes: Sequence[int] = (5, 3, 3),
        strides: int | Sequence[int] = (1, 2, 2),
        paddings: int | Sequence[int] | None = None,
        pool: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if dim not in (1, 2):
            raise ValueError(f"dim must be 1 or 2, got {dim}")
        input_shape = tuple(int(s) for s in input_shape)
        if len(input_shape) != dim + 1:
            raise ValueError(f"input_shape for a {dim}-D CNN is (C, {'L' if dim == 1 else 'H, W'}), got {input_shape}")
        depth = len(kernel_sizes)
        kernel_sizes = _as_tuple(kernel_sizes, depth, "kernel_sizes")
        strides = _as_tuple(strides, depth, "strides")
        # k // 2 keeps the length at stride 1 for odd kernels, the convention of the paper's code.
        paddings = tuple(k // 2 for k in kernel_sizes) if paddings is None else _as_tuple(paddings, depth, "paddings")
        conv = nn.Conv1d if dim == 1 else nn.Conv2d
        pooling = nn.MaxPool1d if dim == 1 else nn.MaxPool2d
        layers: list[nn.Module] = []
        in_channels = input_shape[0]
        for kernel, stride, padding in zip(kernel_sizes, strides, paddings):
            layers += [conv(in_channels, channels, kernel, stride=stride, padding=padding, bias=bias), nn.ReLU()]
            if pool:
                layers.append(pooling(kernel_size=3, stride=2))
            in_channels = channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(_flat_size(self.features, input_shape), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class AlexNet(nn.Module):
    """AlexNet for 32x32 inputs, as used by d'Ascoli et al. (2019) on CIFAR-100."""

    def __init__(self, *, num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32), dropout: float = 0.5) -> None:
        super().__init__()
        input_shape = tuple(int(s) for s in input_shape)
        self.features = nn.Sequential(
            nn.Conv2d(input_shape[0], 64, kernel_size=4, stride=2, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(_flat_size(self.features, input_shape), 512),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(512, 512),
            nn.ReLU(),
            nn.Linear(512, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


@register_architecture("vanilla1d")
def vanilla1d(
    *,
    input_shape: Sequence[int] = (1, 40),
    num_classes: int = 10,
    channels: int = 64,
    kernel_sizes: Sequence[int] = (5, 3, 3),
    strides: int | Sequence[int] = (1, 2, 2),
    paddings: int | Sequence[int] | None = None,
    pool: bool = False,
    bias: bool = True,
) -> VanillaCNN:
    """1-D VanillaCNN; defaults fit MNIST-1D (input (1, 40), 10 classes)."""
    return VanillaCNN(
        dim=1, input_shape=input_shape, num_classes=num_classes, channels=channels, kernel_sizes=kernel_sizes,
        strides=strides, paddings=paddings, pool=pool, bias=bias,
    )


@register_architecture("vanilla2d")
def vanilla2d(
    *,
    input_shape: Sequence[int] = (3, 32, 32),
    num_classes: int = 10,
    channels: int = 64,
    kernel_sizes: Sequence[int] = (4, 5, 3),
    strides: int | Sequence[int] = (2, 1, 1),
    paddings: int | Sequence[int] | None = (2, 2, 1),
    pool: bool = True,
    bias: bool = True,
) -> VanillaCNN:
    """2-D VanillaCNN of the paper (kernels 4/5/3, max-pooling); defaults fit CIFAR."""
    return VanillaCNN(
        dim=2, input_shape=input_shape, num_classes=num_classes, channels=channels, kernel_sizes=kernel_sizes,
        strides=strides, paddings=paddings, pool=pool, bias=bias,
    )


@register_architecture("alexnet")
def alexnet(*, input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10, dropout: float = 0.5) -> AlexNet:
    """The paper's AlexNet for 32x32 inputs."""
    return AlexNet(num_classes=num_classes, input_shape=input_shape, dropout=dropout)


@register_architecture("mlp")
def mlp(*, input_shape: Sequence[int] = (1, 40), num_classes: int = 10, hidden: Sequence[int] = (256, 256)) -> nn.Sequential:
    """A plain ReLU perceptron on the flattened input."""
    widths = [int(torch.Size(input_shape).numel()), *hidden]
    layers: list[nn.Module] = [nn.Flatten()]
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    layers.append(nn.Linear(widths[-1], num_classes))
    return nn.Sequential(*layers)
