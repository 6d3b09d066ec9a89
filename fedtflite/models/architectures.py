"""The named architectures: their weight shapes and seeded initial weights (no TF).

Their layers are Keras definitions (:mod:`fedtflite.models.zoo`) built by
:func:`fedtflite.models.from_keras` like any user's model; the shapes here are
checked against those definitions by ``tests/test_zoo.py``. Weights are listed
in the order the `parameters` signature exports them as ``a0, a1, ...``: for
each layer, input to output, its kernel then its bias.

``mlp``
    784 -> 128 -> 10 with ReLU, the model of TensorFlow's on-device training
    tutorial. ``a0: [784,128]``, ``a1: [128]``, ``a2: [128,10]``, ``a3: [10]``.
``cnn``
    The "simple CNN" of NIID-Bench (Li et al., ICDE 2022) and Flower's
    ``baselines/niid_bench``: conv 5x5x6 -> ReLU -> 2x2 max-pool -> conv 5x5x16 ->
    ReLU -> 2x2 max-pool -> 120 -> 84 -> 10 (ReLU between the dense layers).
    ``a0: [5,5,1,6]``, ``a1: [6]``, ``a2: [5,5,6,16]``, ``a3: [16]``,
    ``a4: [256,120]``, ``a5: [120]``, ``a6: [120,84]``, ``a7: [84]``,
    ``a8: [84,10]``, ``a9: [10]``. The flatten is NHWC (row, column, channel).
``2nn``
    The MNIST "2NN" of McMahan et al. 2017 (the FedAvg paper, AISTATS):
    784 -> 200 -> 200 -> 10 with ReLU; 199 210 weights.
``fedavg-cnn``
    The MNIST CNN of McMahan et al. 2017: conv 5x5x32 'same' -> ReLU -> 2x2
    max-pool -> conv 5x5x64 'same' -> ReLU -> 2x2 max-pool -> 512 ReLU -> 10;
    1 663 370 weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ARCHITECTURES", "WEIGHT_INITS", "Architecture", "init_weights"]

NUM_CLASSES = 10


@dataclass(frozen=True)
class Architecture:
    """A named network.

    Attributes
    ----------
    name : str
        The name users pass (``mlp``, ``cnn``).
    shapes : tuple of tuple of int
        Weight shapes in export order (kernel, bias per layer).
    needs_static_batch : bool
        True when the `train` step needs a fixed batch size (convolutions).
    description : str
        One line for ``fedtflite build --help`` and docs.
    """

    name: str
    shapes: tuple[tuple[int, ...], ...]
    needs_static_batch: bool
    description: str


ARCHITECTURES: dict[str, Architecture] = {
    "mlp": Architecture(
        name="mlp",
        shapes=((784, 128), (128,), (128, 10), (10,)),
        needs_static_batch=False,
        description="784-128-10 ReLU MLP (TensorFlow on-device training tutorial)",
    ),
    "cnn": Architecture(
        name="cnn",
        shapes=(
            (5, 5, 1, 6),
            (6,),
            (5, 5, 6, 16),
            (16,),
            (256, 120),
            (120,),
            (120, 84),
            (84,),
            (84, 10),
            (10,),
        ),
        needs_static_batch=True,
        description="NIID-Bench simple CNN: conv6-pool-conv16-pool-120-84-10",
    ),
    "2nn": Architecture(
        name="2nn",
        shapes=((784, 200), (200,), (200, 200), (200,), (200, 10), (10,)),
        needs_static_batch=False,
        description="784-200-200-10 ReLU MLP (McMahan et al. 2017, the 2NN)",
    ),
    "fedavg-cnn": Architecture(
        name="fedavg-cnn",
        shapes=(
            (5, 5, 1, 32),
            (32,),
            (5, 5, 32, 64),
            (64,),
            (3136, 512),
            (512,),
            (512, 10),
            (10,),
        ),
        needs_static_batch=True,
        description="conv32-pool-conv64-pool-512-10 (McMahan et al. 2017, the CNN)",
    ),
}


WEIGHT_INITS = ("glorot", "torch")
"""Initial-weight schemes (config key ``weight-init``): Keras' defaults or PyTorch's."""


def _fans(shape: Sequence[int]) -> tuple[int, int]:
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[:-2]))
    return shape[-2] * receptive, shape[-1] * receptive


def init_weights(
    arch: Architecture, seed: int, scheme: str = "glorot"
) -> list[np.ndarray]:
    """Seeded initial weights in export order.

    ``glorot`` (Keras' defaults): Glorot-uniform kernels,
    ``U(-sqrt(6 / (fan_in + fan_out)), +...)``, and zero biases.

    ``torch`` (PyTorch's defaults for ``nn.Linear`` and ``nn.Conv2d``, how
    NIID-Bench's and Flower's ``simple-cnn`` start): kernels from
    ``kaiming_uniform_(a=sqrt(5))``, which is ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``
    (gain ``sqrt(2 / (1 + a^2)) = sqrt(1/3)`` times ``sqrt(3 / fan_in)``), and biases
    from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with the fan-in of their layer's
    kernel (``in_channels * k * k`` for a convolution). The distributions are
    PyTorch's; the draws come from NumPy, not from PyTorch's generator.

    Parameters
    ----------
    arch : Architecture
        Which network.
    seed : int
        Seed of the initializer; the same seed gives the same weights.
    scheme : str
        One of :data:`WEIGHT_INITS`. Default ``glorot``.

    Returns
    -------
    list of np.ndarray
        float32 arrays in export order.

    Raises
    ------
    ValueError
        An unknown ``scheme``.
    """
    if scheme not in WEIGHT_INITS:
        raise ValueError(f"weight-init {scheme!r} is not one of {WEIGHT_INITS}")
    rng = np.random.default_rng(seed)
    weights = []
    fan_in = 1
    for shape in arch.shapes:
        if len(shape) == 1:  # the bias of the kernel before it
            if scheme == "glorot":
                weights.append(np.zeros(shape, np.float32))
            else:
                bound = 1.0 / np.sqrt(fan_in)
                weights.append(rng.uniform(-bound, bound, shape).astype(np.float32))
            continue
        fan_in, fan_out = _fans(shape)
        if scheme == "glorot":
            limit = np.sqrt(6.0 / (fan_in + fan_out))
        else:
            limit = 1.0 / np.sqrt(fan_in)
        weights.append(rng.uniform(-limit, limit, shape).astype(np.float32))
    return weights
