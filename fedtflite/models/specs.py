"""What a built model is made of: architecture, optimizer, seed, batch (no TF)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fedtflite.errors import ConfigError, invalid_value
from fedtflite.models.architectures import ARCHITECTURES, WEIGHT_INITS

__all__ = [
    "DEFAULT_LEARNING_RATE",
    "DEFAULT_STATIC_BATCH",
    "MAX_BATCH_SIZE",
    "OPTIMIZERS",
    "UPDATE_RULES",
    "ModelSpec",
    "OptimizerSpec",
    "check_batch_size",
]

DEFAULT_LEARNING_RATE = 0.05
"""The client learning rate of the named models, wherever none is given
(``fedtflite build``, ``fedtflite train``, a simulation's ``learning-rate``)."""

MAX_BATCH_SIZE = 65536
"""Largest ``batch-size`` a model is built or trained with."""

OPTIMIZERS = ("sgd", "adam")
"""Optimizers of the named models (``fedtflite build mlp --optimizer ...``)."""

UPDATE_RULES = ("sgd", "adam", "adamw", "rmsprop")
"""Every update rule a `.tflite` can carry (Keras models bring AdamW and RMSprop)."""


@dataclass(frozen=True)
class OptimizerSpec:
    """The optimizer a model is built with; the update rules are Keras 3's.

    Attributes
    ----------
    name : str
        One of :data:`UPDATE_RULES`. ``"adamw"`` is ``"adam"`` (Keras' AdamW
        is Adam with a default ``weight_decay``).
    learning_rate : float
        Initial learning rate; a model's ``set_learning_rate`` signature changes it.
    momentum : float
        SGD's or RMSprop's momentum. 0 disables it.
    momentum_form : str
        SGD's: ``"pytorch"`` (``v = momentum v + g; w -= lr v``, the named
        models', as NIID-Bench) or ``"keras"`` (``m = momentum m - lr g;
        w += m``, Keras models'). The two take the same steps for a constant
        learning rate up to float rounding, which SGD with momentum amplifies
        over a few hundred steps, so each model keeps its own.
    nesterov : bool
        SGD with Nesterov momentum in Keras' form, ``w += momentum m - lr g``
        with the updated ``m``.
    weight_decay : float
        L2 coupled into the gradient, ``g + weight_decay w``, as PyTorch's SGD
        (the named models' ``weight-decay``; NIID-Bench uses it).
    decoupled_weight_decay : float
        Keras 3's ``weight_decay`` (AdamW, and any Keras optimizer given one):
        ``w -= lr decoupled_weight_decay w`` before each update.
    beta_1, beta_2, epsilon : float
        Adam's constants; the update is Keras' (Kingma & Ba 2015, the
        epsilon-hat form: ``w -= lr sqrt(1-b2^t)/(1-b1^t) m / (sqrt(v) + eps)``).
        ``epsilon`` is RMSprop's too.
    amsgrad : bool
        Adam with AMSGrad's running maximum of ``v`` (Reddi et al. 2018).
    rho : float
        RMSprop's decay of the squared-gradient average.
    centered : bool
        Centered RMSprop (divides by an estimate of the gradient's variance).
    """

    name: str = "sgd"
    learning_rate: float = DEFAULT_LEARNING_RATE
    momentum: float = 0.0
    weight_decay: float = 0.0
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    momentum_form: str = "pytorch"
    nesterov: bool = False
    decoupled_weight_decay: float = 0.0
    amsgrad: bool = False
    rho: float = 0.9
    centered: bool = False


def check_batch_size(batch_size: int | None) -> None:
    """Refuse a static ``batch-size`` outside ``1..MAX_BATCH_SIZE`` (None: dynamic).

    Raises
    ------
    ConfigError
        Naming ``batch-size`` and the valid range.
    """
    if batch_size is not None and not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ConfigError(
            invalid_value("batch-size", batch_size, f"1..{MAX_BATCH_SIZE}")
        )


DEFAULT_STATIC_BATCH = 32
"""Batch size of `train` for architectures that need a static one (the ``cnn``)."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything that determines the bytes of a built model.

    A bad field raises :class:`~fedtflite.errors.ConfigError` naming its config
    key (``model``, ``optimizer``, ``learning-rate`` ...); a simulation's config
    is checked here too.

    Attributes
    ----------
    architecture : str
        A name in :data:`fedtflite.models.architectures.ARCHITECTURES`.
    optimizer : OptimizerSpec
        The optimizer baked into `train`.
    seed : int
        Seed of the initial weights; the same spec gives the same bytes.
    weight_init : str
        Initial-weight scheme, one of
        :data:`~fedtflite.models.architectures.WEIGHT_INITS`: ``glorot`` (Keras'
        defaults, the default) or ``torch`` (PyTorch's, as NIID-Bench starts).
    batch_size : int or None
        Static `train` batch (with a ``mask`` input) or None for a dynamic one.
        None on an architecture that needs a static batch means
        :data:`DEFAULT_STATIC_BATCH`.
    proximal : bool
        Add FedProx's proximal term and a ``set_proximal_mu`` signature.
    scaffold : bool
        Add SCAFFOLD's gradient correction and a ``set_correction`` signature.
    """

    architecture: str = "mlp"
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    seed: int = 0
    weight_init: str = "glorot"
    batch_size: int | None = None
    proximal: bool = False
    scaffold: bool = False

    def __post_init__(self) -> None:
        opt = self.optimizer
        for ok, key, value, expected in (
            (
                self.architecture in ARCHITECTURES,
                "model",
                self.architecture,
                f"{', '.join(ARCHITECTURES)} or a path ending in .tflite or .keras",
            ),
            (opt.name in OPTIMIZERS, "optimizer", opt.name, " or ".join(OPTIMIZERS)),
            (
                self.weight_init in WEIGHT_INITS,
                "weight-init",
                self.weight_init,
                f"one of {', '.join(WEIGHT_INITS)}",
            ),
            (opt.learning_rate > 0, "learning-rate", opt.learning_rate, "> 0"),
            (0 <= opt.momentum < 1, "momentum", opt.momentum, "0 <= momentum < 1"),
            (opt.weight_decay >= 0, "weight-decay", opt.weight_decay, ">= 0"),
        ):
            if not ok:
                raise ConfigError(invalid_value(key, value, expected))
        check_batch_size(self.batch_size)

    @property
    def train_batch(self) -> int | None:
        """The static batch of `train`, or None for a dynamic batch."""
        if (
            self.batch_size is None
            and ARCHITECTURES[self.architecture].needs_static_batch
        ):
            return DEFAULT_STATIC_BATCH
        return self.batch_size
