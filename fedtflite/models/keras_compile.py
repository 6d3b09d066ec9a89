"""A compiled Keras model's loss and optimizer, read from their configs.

Keras 3's loss functions and its SGD, Adam, AdamW and RMSprop map onto
:class:`~fedtflite.models.network.Loss` and
:class:`~fedtflite.models.specs.OptimizerSpec` (whose update rules are Keras');
any other loss, optimizer or optimizer option is refused in one line.
"""

from __future__ import annotations

import os
from typing import Any

from fedtflite.models.keras_layers import Fail, describe
from fedtflite.models.network import Loss
from fedtflite.models.specs import OptimizerSpec

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # after the log level

__all__ = ["SUPPORTED_OPTIMIZERS", "read_loss", "read_optimizer"]

SUPPORTED_OPTIMIZERS = {
    "SGD": "sgd",
    "Adam": "adam",
    "AdamW": "adamw",
    "RMSprop": "rmsprop",
}


def read_loss(model: Any, source: str, strips: bool, last: Any) -> Loss:
    """The compiled loss; ``strips``: the model ends in a softmax or sigmoid
    (``last`` its last layer, for messages)."""
    fail = Fail(source)
    supported = (
        "supported: SparseCategoricalCrossentropy or CategoricalCrossentropy "
        "(from_logits True or False)"
    )
    loss = getattr(model, "loss", None)
    if loss is None:
        fail(
            "is not compiled with a loss; call model.compile(optimizer=..., "
            "loss='sparse_categorical_crossentropy') before saving"
        )
    if isinstance(loss, list | tuple) and len(loss) == 1:
        loss = loss[0]
    compile_config = getattr(getattr(model, "_compile_config", None), "config", {})
    weights = compile_config.get("loss_weights") if compile_config else None
    if weights not in (None, 1, 1.0, [1], [1.0]):
        fail(f"loss_weights={weights!r}; supported: None")
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    if loss is keras.losses.sparse_categorical_crossentropy:
        sparse, from_logits = True, False
    elif loss is keras.losses.categorical_crossentropy:
        sparse, from_logits = False, False
    elif type(loss) in (
        keras.losses.SparseCategoricalCrossentropy,
        keras.losses.CategoricalCrossentropy,
    ):
        cfg = loss.get_config()
        sparse = type(loss) is keras.losses.SparseCategoricalCrossentropy
        from_logits = bool(cfg.get("from_logits", False))
        options = {
            "reduction": (
                cfg.get("reduction", "sum_over_batch_size"),
                "sum_over_batch_size",
            ),
            "label_smoothing": (cfg.get("label_smoothing", 0.0), 0.0),
            "ignore_class": (cfg.get("ignore_class"), None),
            "axis": (cfg.get("axis", -1), -1),
        }
        for key, (value, default) in options.items():
            if value != default:
                fail(
                    f"loss {type(loss).__name__} has {key}={value!r}; "
                    f"supported: {default!r}"
                )
    else:
        name = getattr(loss, "__name__", type(loss).__name__)
        fail(f"loss {name} is not supported; {supported}")
    if not from_logits and not strips:
        fail(
            f"the loss takes probabilities (from_logits=False) but the model ends "
            f"in layer {describe(last)}, not a softmax; end it in "
            "activation='softmax' or compile with from_logits=True"
        )
    return Loss(sparse=sparse, from_logits=from_logits)


def read_optimizer(model: Any, source: str) -> OptimizerSpec:
    """The compiled optimizer as an :class:`OptimizerSpec` (Keras' update rules)."""
    fail = Fail(source)
    opt = getattr(model, "optimizer", None)
    if opt is None:
        fail(
            "is not compiled with an optimizer; call model.compile(optimizer=..., "
            "loss=...) before saving"
        )
    kind = type(opt).__name__
    if kind not in SUPPORTED_OPTIMIZERS or type(opt) is not getattr(
        keras.optimizers, kind, None
    ):
        fail(
            f"optimizer {kind} is not supported; supported: "
            f"{', '.join(SUPPORTED_OPTIMIZERS)}"
        )
    cfg = opt.get_config()
    where = f"optimizer {kind}"
    if not isinstance(cfg["learning_rate"], int | float):
        fail(
            f"{where} has a learning-rate schedule; supported: a constant rate "
            "(a simulation sets it per round through set_learning_rate)"
        )
    for key in (
        "clipnorm",
        "clipvalue",
        "global_clipnorm",
        "loss_scale_factor",
        "gradient_accumulation_steps",
    ):
        if cfg.get(key) is not None:
            fail(f"{where} has {key}={cfg[key]!r}; supported: None")
    if cfg.get("use_ema"):
        fail(f"{where} has use_ema=True; supported: False")
    decay = float(cfg.get("weight_decay") or 0.0)
    if decay and hasattr(opt, "_use_weight_decay"):
        excluded = [
            v.path for v in model.trainable_weights if not opt._use_weight_decay(v)
        ]
        if excluded:
            fail(
                f"{where} excludes {', '.join(excluded)} from weight_decay; "
                "supported: weight decay on every trainable weight"
            )
    name = SUPPORTED_OPTIMIZERS[kind]
    defaults = OptimizerSpec()
    return OptimizerSpec(
        name=name,
        learning_rate=float(cfg["learning_rate"]),
        momentum=float(cfg.get("momentum", 0.0)),
        momentum_form="keras",
        nesterov=bool(cfg.get("nesterov", False)),
        decoupled_weight_decay=decay,
        beta_1=float(cfg.get("beta_1", defaults.beta_1)),
        beta_2=float(cfg.get("beta_2", defaults.beta_2)),
        epsilon=float(cfg.get("epsilon", defaults.epsilon)),
        amsgrad=bool(cfg.get("amsgrad", False)),
        rho=float(cfg.get("rho", defaults.rho)),
        centered=bool(cfg.get("centered", False)),
    )
