"""The trainable `tf.Module` whose signatures become the on-device model.

Signatures (the contract of TensorFlow's on-device training tutorial and
Flower's Android example):

``train(x, y[, mask][, noise0, noise1, ...]) -> {loss}``
    One optimizer step on the batch. ``x: float32[B, *input_shape]``; ``y``
    one-hot ``float32[B,C]`` or class ids ``int32[B]`` (sparse losses). With a
    static batch (spatial layers, or any model built with ``batch_size``) ``B``
    is fixed and ``mask: float32[B]`` marks the real rows of a padded last batch
    (the loss, and batch normalization's statistics, cover real rows only). A
    model with dropout takes one uniform ``[0, 1)`` ``noise<k>`` per dropout
    layer, drawn fresh for every step by the client
    (:meth:`fedtflite.runtime.ClientModel.fit`, from its own seeded stream).
``infer(x: float32[None, *input_shape]) -> {logits, output}``
    ``logits`` is what the loss takes as logits; ``output`` its softmax (the
    Keras model's output when that ends in a softmax). No dropout; batch
    normalization uses its moving statistics.
``parameters() -> {a0, a1, ...}``
    The trainable weights (Keras' ``model.trainable_weights`` order), then the
    moving statistics of batch normalization layers (``non_trainable_weights``
    order).
``restore(a0, a1, ...) -> {step}``
    Loads the weights and resets the optimizer state: every slot (momentum,
    Adam's m and v, RMSprop's averages) to zero and the step count to 0
    (``step`` returns it). The learning rate is *not* reset.
``set_learning_rate(lr: float32[]) -> {lr}``
    Optional run-time knob; a model without it is still a valid client model.
``train_tail(x, y[, noise0, ...]) -> {loss}``
    Dynamic-batch models only: `train` again, the same step on the same
    variables, in a subgraph of its own. A client runs its full batches
    through `train` and its last, partial batch through `train_tail`, so each
    subgraph keeps its tensors allocated for one batch size instead of the
    interpreter re-allocating `train` twice per client (~50 us a client for
    the ``mlp``, a tenth of its compute at 60 examples). Optional; a phone
    that ignores it trains the same.

Built with ``proximal`` (FedProx, Li et al., MLSys 2020):

``set_proximal_mu(mu: float32[]) -> {mu}``
    `train` then adds the gradient of ``mu/2 ||w - w_g||^2``, where ``w_g`` is
    what the last `restore` loaded (trainable weights only); `loss` stays the
    data loss.

Built with ``scaffold`` (SCAFFOLD, Karimireddy et al., ICML 2020):

``set_correction(a0, a1, ...) -> {norm}``
    Sets ``c - c_i`` (global minus client control variate); each `train` step
    then also moves the weights by ``-lr (c - c_i)``: for plain SGD exactly the
    corrected gradient ``g - c_i + c``. As in NIID-Bench and Flower's
    ``baselines/niid_bench``, the correction is applied after the optimizer step,
    outside the momentum buffer, to the trainable weights (a moving statistic's
    correction is ignored). `restore` zeroes it, so the client sets it after
    each `restore`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from fedtflite.models import ops
from fedtflite.models.layers import Pass, forward, noise_shapes
from fedtflite.models.network import Network
from fedtflite.models.optimizers import Optimizer
from fedtflite.models.specs import OptimizerSpec

__all__ = ["TrainableModel"]


class TrainableModel(tf.Module):  # type: ignore[misc]  # tf is untyped
    """Weights and optimizer state as plain variables, plus the signatures.

    Parameters
    ----------
    net : Network
        The layers and the loss.
    weights : list of np.ndarray
        Initial value of every ``net.weights`` entry, same order.
    optimizer : OptimizerSpec
        Optimizer baked into `train`.
    batch_size : int or None
        Static batch of `train` (with a ``mask`` input), or None for a dynamic
        batch (not allowed for networks that need a static one).
    proximal, scaffold : bool
        Add FedProx's term / SCAFFOLD's correction and their signatures.
    """

    def __init__(
        self,
        net: Network,
        weights: Sequence[np.ndarray],
        optimizer: OptimizerSpec,
        batch_size: int | None,
        *,
        proximal: bool = False,
        scaffold: bool = False,
    ):
        super().__init__(name="model")
        if batch_size is None and net.needs_static_batch:
            raise ValueError("this network needs a static batch size")
        self.net = net
        self.batch_size = batch_size
        n_params = len(net.parameters)
        self.w = [
            tf.Variable(v, dtype=tf.float32, name=f"a{i}")
            for i, v in enumerate(weights[:n_params])
        ]
        constants = [tf.constant(v, tf.float32) for v in weights[n_params:]]
        self._tensors: list[Any] = [*self.w, *constants]
        self.trainable = self.w[: net.num_trainable]
        self.opt = Optimizer(optimizer, self.trainable)
        self.proximal, self.scaffold = proximal, scaffold
        if proximal:  # FedProx: w_g (what restore loaded) and mu
            self.anchor = [
                tf.Variable(v, name=f"anchor{i}") for i, v in enumerate(self.trainable)
            ]
            self.mu = tf.Variable(0.0, dtype=tf.float32, name="mu")
        if scaffold:  # SCAFFOLD: the correction c - c_i added to every gradient
            self.correction = [
                tf.Variable(tf.zeros_like(v), name=f"correction{i}")
                for i, v in enumerate(self.trainable)
            ]

    def signatures(self) -> dict[str, Any]:
        """Concrete functions keyed by signature name, ready for export."""
        b, net = self.batch_size, self.net
        x_spec = tf.TensorSpec([b, *net.input_shape], tf.float32, name="x")
        if net.loss.sparse:
            y_spec = tf.TensorSpec([b], tf.int32, name="y")
        else:
            y_spec = tf.TensorSpec([b, net.num_classes], tf.float32, name="y")
        train_specs = [x_spec, y_spec]
        if b is not None:
            train_specs.append(tf.TensorSpec([b], tf.float32, name="mask"))
        train_specs += [
            tf.TensorSpec(shape, tf.float32, name=f"noise{k}")
            for k, shape in enumerate(noise_shapes(net, b))
        ]
        restore_specs = [
            tf.TensorSpec(v.shape, tf.float32, name=f"a{i}")
            for i, v in enumerate(self.w)
        ]

        def concrete(fn: Any, specs: Sequence[tf.TensorSpec]) -> Any:
            return tf.function(fn, input_signature=list(specs)).get_concrete_function()

        scalar = tf.TensorSpec([], tf.float32, name="lr")
        sigs = {
            "train": concrete(self._train, train_specs),
            "infer": concrete(
                self._infer,
                [tf.TensorSpec([None, *net.input_shape], tf.float32, name="x")],
            ),
            "parameters": concrete(self._parameters, []),
            "restore": concrete(self._restore, restore_specs),
            "set_learning_rate": concrete(self._set_learning_rate, [scalar]),
        }
        if b is None:  # the contract's optional train_tail: train, own subgraph
            sigs["train_tail"] = sigs["train"]
        if self.proximal:
            sigs["set_proximal_mu"] = concrete(
                self._set_proximal_mu, [tf.TensorSpec([], tf.float32, name="mu")]
            )
        if self.scaffold:
            sigs["set_correction"] = concrete(self._set_correction, restore_specs)
        return sigs

    def loss_and_step(
        self,
        x: tf.Tensor,
        y: tf.Tensor,
        mask: tf.Tensor,
        noise: Sequence[tf.Tensor] = (),
    ) -> tf.Tensor:
        """Loss of the batch before the step; applies one optimizer step."""
        net = self.net
        labels = tf.one_hot(y, net.num_classes) if net.loss.sparse else y
        with tf.GradientTape() as tape:
            run = Pass(training=True, mask=mask, noise=tuple(noise))
            logits = forward(net, self._tensors, x, run)
            loss = ops.softmax_cross_entropy(logits, labels, mask)
        grads = tape.gradient(loss, self.trainable)
        if (
            self.proximal
        ):  # d/dw of mu/2 ||w - w_g||^2 (the loss reported is the data loss)
            grads = [
                g + self.mu * (w - a)
                for g, w, a in zip(grads, self.trainable, self.anchor, strict=True)
            ]
        self.opt.apply(self.trainable, grads)
        if self.scaffold:  # y <- y - lr (c - c_i), after the optimizer step
            for w, c in zip(self.trainable, self.correction, strict=True):
                w.assign_sub(self.opt.lr * c)
        return loss

    def _train(
        self, x: tf.Tensor, y: tf.Tensor, *rest: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        if self.batch_size is None:  # every row is real
            sparse = self.net.loss.sparse
            mask = tf.ones_like(y, tf.float32) if sparse else tf.ones_like(y[:, 0])
            noise = rest
        else:
            mask, noise = rest[0], rest[1:]
        return {"loss": self.loss_and_step(x, y, mask, noise)}

    def _infer(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = forward(self.net, self._tensors, x, Pass(training=False))
        return {"logits": logits, "output": tf.nn.softmax(logits)}

    def _parameters(self) -> dict[str, tf.Tensor]:
        return {f"a{i}": tf.identity(v) for i, v in enumerate(self.w)}

    def _restore(self, *arrays: tf.Tensor) -> dict[str, tf.Tensor]:
        for v, a in zip(self.w, arrays, strict=True):
            v.assign(a)
        if self.proximal:
            for anchor, a in zip(self.anchor, arrays, strict=False):
                anchor.assign(a)
        if self.scaffold:
            for c in self.correction:
                c.assign(tf.zeros_like(c))
        self.opt.reset()
        return {"step": tf.identity(self.opt.step)}

    def _set_learning_rate(self, lr: tf.Tensor) -> dict[str, tf.Tensor]:
        self.opt.lr.assign(lr)
        return {"lr": tf.identity(self.opt.lr)}

    def _set_proximal_mu(self, mu: tf.Tensor) -> dict[str, tf.Tensor]:
        self.mu.assign(mu)
        return {"mu": tf.identity(self.mu)}

    def _set_correction(self, *arrays: tf.Tensor) -> dict[str, tf.Tensor]:
        for c, a in zip(self.correction, arrays, strict=False):
            c.assign(a)
        return {
            "norm": tf.add_n([tf.reduce_sum(tf.square(c)) for c in self.correction])
        }
