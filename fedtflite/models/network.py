"""A network as fedtflite builds it: a chain of primitive layers (no TensorFlow).

:mod:`fedtflite.models.keras_reader` turns a Keras model into a :class:`Network`
(a Keras layer with a fused activation becomes two primitive layers);
:mod:`fedtflite.models.layers` runs one in TensorFlow with builtins-only
gradients. Every layer keeps ``source``, the Keras class and name it came from,
for messages. Weights are referenced by their index in :attr:`Network.weights`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "BatchNorm",
    "Conv2D",
    "Dense",
    "Dropout",
    "GlobalAveragePool2D",
    "Layer",
    "Loss",
    "Network",
    "Pool2D",
    "Reshape",
    "Weight",
    "ends_in_cached_logits",
]

ACTIVATIONS = (
    "linear",
    "relu",
    "relu6",
    "tanh",
    "sigmoid",
    "softmax",
    "elu",
    "leaky_relu",
    "silu",
)
"""Element-wise activations (and ``softmax`` over the last axis) :class:`Activation`
supports; ``alpha`` is ELU's alpha or leaky ReLU's negative slope."""


@dataclass(frozen=True)
class Weight:
    """One weight of the network.

    Attributes
    ----------
    name : str
        The Keras variable's path (``dense/kernel``), for messages.
    shape : tuple of int
        Its shape.
    kind : str
        ``"trainable"``: updated by the optimizer; ``"state"``: updated by its
        layer in ``train`` (batch normalization's moving statistics); both are
        variables of the `.tflite` that ``parameters`` exports. ``"constant"``:
        baked in (a frozen Keras layer's weights).
    """

    name: str
    shape: tuple[int, ...]
    kind: str


@dataclass(frozen=True)
class Dense:
    """``x @ kernel + bias`` over the last axis (any leading axes)."""

    source: str
    kernel: int
    bias: int | None


@dataclass(frozen=True)
class Conv2D:
    """2-D convolution, NHWC, ``padding`` ``"valid"`` or ``"same"``, plus bias."""

    source: str
    kernel: int
    bias: int | None
    strides: tuple[int, int]
    padding: str


@dataclass(frozen=True)
class Pool2D:
    """Max (``mode="max"``) or average (``"avg"``) pooling, NHWC.

    Average pooling with ``"same"`` padding averages the real inputs of a window
    only (TensorFlow's and Keras' convention).
    """

    source: str
    mode: str
    pool_size: tuple[int, int]
    strides: tuple[int, int]
    padding: str


@dataclass(frozen=True)
class GlobalAveragePool2D:
    """Mean over height and width: ``[B,H,W,C] -> [B,C]`` (``[B,1,1,C]`` kept)."""

    source: str
    keepdims: bool


@dataclass(frozen=True)
class Reshape:
    """Reshape every example to ``shape`` (Keras' Flatten and Reshape)."""

    source: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Activation:
    """One of :data:`ACTIVATIONS`; ``alpha`` as Keras' argument of that name
    (ELU's ``alpha``, leaky ReLU's ``negative_slope``), else 0."""

    source: str
    function: str
    alpha: float = 0.0


@dataclass(frozen=True)
class Dropout:
    """Inverted dropout in ``train``, identity in ``infer``.

    ``train`` takes one uniform ``[0, 1)`` noise input per dropout layer, of shape
    ``noise_shape`` with the batch first (``-1``: the batch size; 1: one mask for
    the whole batch); an element is kept where its noise is ``>= rate`` and kept
    elements are scaled by ``1 / (1 - rate)`` (Keras' ``stateless_dropout``).
    """

    source: str
    rate: float
    noise_shape: tuple[int, ...]


@dataclass(frozen=True)
class BatchNorm:
    """Batch normalization over the last axis (Keras' ``BatchNormalization``).

    ``train`` normalizes with the batch's mean and (biased) variance over the
    real rows and moves ``moving_mean``/``moving_variance`` towards them by
    ``1 - momentum``; ``infer`` normalizes with the moving statistics. ``gamma``
    and ``beta`` are None when Keras' ``scale``/``center`` are off. A ``frozen``
    layer (Keras ``trainable=False``) uses the moving statistics in ``train``
    too, and its weights are constants, as in Keras 3.
    """

    source: str
    gamma: int | None
    beta: int | None
    moving_mean: int
    moving_variance: int
    momentum: float
    epsilon: float
    frozen: bool = False


Layer = (
    Dense
    | Conv2D
    | Pool2D
    | GlobalAveragePool2D
    | Reshape
    | Activation
    | Dropout
    | BatchNorm
)


@dataclass(frozen=True)
class Loss:
    """Cross-entropy over the classes, averaged over the batch.

    Attributes
    ----------
    sparse : bool
        True: labels are class ids (``int32[B]``, sparse categorical
        cross-entropy); False: one-hot ``float32[B,C]``.
    from_logits : bool
        Keras' ``from_logits``. False needs a final softmax, which the loss then
        skips (Keras does the same: it takes the softmax's input as logits).
    """

    sparse: bool
    from_logits: bool


@dataclass(frozen=True)
class Network:
    """A chain of layers from ``x`` to the class scores, with its loss.

    Attributes
    ----------
    input_shape : tuple of int
        Per-example shape of ``x``: ``(28, 28)``, ``(28, 28, 1)`` or ``(784,)``.
    layers : tuple of Layer
        In order, input to output.
    weights : tuple of Weight
        Every weight the layers use: the trainable ones, then the state ones,
        then the constants. The first two groups, in this order, are the
        model's ``parameters`` ``a0, a1, ...``.
    num_classes : int
        Width of the output.
    loss : Loss
        The training loss.
    """

    input_shape: tuple[int, ...]
    layers: tuple[Layer, ...]
    weights: tuple[Weight, ...]
    num_classes: int
    loss: Loss

    def __post_init__(self) -> None:
        rank = {"trainable": 0, "state": 1, "constant": 2}
        kinds = [rank[w.kind] for w in self.weights]
        if kinds != sorted(kinds):
            raise ValueError("weights must be trainable, then state, then constant")

    @property
    def parameters(self) -> tuple[Weight, ...]:
        """The weights ``parameters`` exports as ``a0, a1, ...``."""
        return tuple(w for w in self.weights if w.kind != "constant")

    @property
    def num_trainable(self) -> int:
        """How many of :attr:`parameters` (the first ones) the optimizer updates."""
        return sum(w.kind == "trainable" for w in self.weights)

    @property
    def needs_static_batch(self) -> bool:
        """True when ``train`` needs a fixed batch (spatial layers, batch norm)."""
        spatial = (Conv2D, Pool2D, GlobalAveragePool2D, BatchNorm)
        return any(isinstance(layer, spatial) for layer in self.layers)

    @property
    def dropouts(self) -> tuple[Dropout, ...]:
        """The dropout layers, in order: ``train``'s ``noise0, noise1, ...``."""
        return tuple(layer for layer in self.layers if isinstance(layer, Dropout))

    @property
    def strips_last_activation(self) -> bool:
        """True when the loss takes the last layer's input as its logits.

        That is when the last layer is a softmax or a sigmoid, whatever
        ``from_logits`` says: Keras' TensorFlow backend finds the logits those
        activations cached on their output and uses them instead.
        """
        return ends_in_cached_logits(self.layers)


def ends_in_cached_logits(layers: tuple[Layer, ...]) -> bool:
    """True when the last layer is a softmax or sigmoid (whose input Keras' loss
    takes as logits); see :attr:`Network.strips_last_activation`."""
    last = layers[-1] if layers else None
    return isinstance(last, Activation) and last.function in ("softmax", "sigmoid")
