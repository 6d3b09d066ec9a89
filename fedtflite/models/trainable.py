"""The trainable `tf.Module` whose signatures become the on-device model.

Signatures (the contract of TensorFlow's on-device training tutorial and
Flower's Android example):

``train(x, y[, mask]) -> {loss}``
    One optimizer step on the batch. ``x: float32[B,28,28]``, ``y: float32[B,10]``
    one-hot. With a static batch (the ``cnn``, or any model built with
    ``batch_size``) ``B`` is fixed and ``mask: float32[B]`` marks the real rows
    of a padded last batch (the loss is the mean over real rows only).
``infer(x: float32[None,28,28]) -> {logits, output}``
    ``output`` is the softmax of ``logits``.
``parameters() -> {a0, a1, ...}``
    Every trainable weight, in the order of :mod:`fedtflite.models.architectures`.
``restore(a0, a1, ...) -> {step}``
    Loads the weights and resets the optimizer state: momentum buffers and
    Adam's m and v to zero, Adam's step count to 0 (``step`` returns it). The
    learning rate is *not* reset.
``set_learning_rate(lr: float32[]) -> {lr}``
    Optional run-time knob; a model without it is still a valid client model.

Built with ``proximal`` (FedProx, Li et al., MLSys 2020):

``set_proximal_mu(mu: float32[]) -> {mu}``
    `train` then adds the gradient of ``mu/2 ||w - w_g||^2``, where ``w_g`` is
    what the last `restore` loaded; `loss` stays the data loss.

Built with ``scaffold`` (SCAFFOLD, Karimireddy et al., ICML 2020):

``set_correction(a0, a1, ...) -> {norm}``
    Sets ``c - c_i`` (global minus client control variate); each `train` step
    then also moves the weights by ``-lr (c - c_i)``: for plain SGD exactly the
    corrected gradient ``g - c_i + c``. As in NIID-Bench and Flower's
    ``baselines/niid_bench``, the correction is applied after the optimizer step,
    outside the momentum buffer. `restore` zeroes it, so the client sets it after
    each `restore`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from fedtflite.models import ops
from fedtflite.models.architectures import NUM_CLASSES, Architecture
from fedtflite.models.optimizers import Optimizer
from fedtflite.models.specs import OptimizerSpec

__all__ = ["TrainableModel"]


def _mlp_logits(w: list[tf.Variable], x: tf.Tensor) -> tf.Tensor:
    h = tf.reshape(x, [-1, 784])
    h = ops.relu(ops.dense(h, w[0], w[1]))
    return ops.dense(h, w[2], w[3])


def _cnn_logits(w: list[tf.Variable], x: tf.Tensor) -> tf.Tensor:
    h = tf.expand_dims(x, -1)
    h = ops.max_pool_2x2(ops.relu(ops.conv2d_valid(h, w[0], w[1])))
    h = ops.max_pool_2x2(ops.relu(ops.conv2d_valid(h, w[2], w[3])))
    h = tf.reshape(h, [-1, 256])
    h = ops.relu(ops.dense(h, w[4], w[5]))
    h = ops.relu(ops.dense(h, w[6], w[7]))
    return ops.dense(h, w[8], w[9])


_FORWARD = {"mlp": _mlp_logits, "cnn": _cnn_logits}


class TrainableModel(tf.Module):  # type: ignore[misc]  # tf is untyped
    """Weights and optimizer state as plain variables, plus the signatures.

    Parameters
    ----------
    arch : Architecture
        Which network.
    weights : list of np.ndarray
        Initial weights, export order.
    optimizer : OptimizerSpec
        Optimizer baked into `train`.
    batch_size : int or None
        Static batch of `train` (with a ``mask`` input), or None for a dynamic
        batch (not allowed for architectures that need a static one).
    """

    def __init__(
        self,
        arch: Architecture,
        weights: list[np.ndarray],
        optimizer: OptimizerSpec,
        batch_size: int | None,
        *,
        proximal: bool = False,
        scaffold: bool = False,
    ):
        super().__init__(name=arch.name)
        self.arch = arch
        self.batch_size = batch_size
        self.w = [
            tf.Variable(v, dtype=tf.float32, name=f"a{i}")
            for i, v in enumerate(weights)
        ]
        self.opt = Optimizer(optimizer, self.w)
        self._logits = _FORWARD[arch.name]
        self.proximal, self.scaffold = proximal, scaffold
        if proximal:  # FedProx: w_g (what restore loaded) and mu
            self.anchor = [
                tf.Variable(v, name=f"anchor{i}") for i, v in enumerate(weights)
            ]
            self.mu = tf.Variable(0.0, dtype=tf.float32, name="mu")
        if scaffold:  # SCAFFOLD: the correction c - c_i added to every gradient
            self.correction = [
                tf.Variable(tf.zeros_like(v), name=f"correction{i}")
                for i, v in enumerate(weights)
            ]

    def signatures(self) -> dict[str, Any]:
        """Concrete functions keyed by signature name, ready for export."""
        b = self.batch_size
        x_spec = tf.TensorSpec([b, 28, 28], tf.float32, name="x")
        y_spec = tf.TensorSpec([b, NUM_CLASSES], tf.float32, name="y")
        if b is None:
            train = tf.function(self._train_dynamic, input_signature=[x_spec, y_spec])
        else:
            mask_spec = tf.TensorSpec([b], tf.float32, name="mask")
            train = tf.function(
                self._train, input_signature=[x_spec, y_spec, mask_spec]
            )
        restore_specs = [
            tf.TensorSpec(v.shape, tf.float32, name=f"a{i}")
            for i, v in enumerate(self.w)
        ]
        sigs = {
            "train": train.get_concrete_function(),
            "infer": tf.function(
                self._infer,
                input_signature=[tf.TensorSpec([None, 28, 28], tf.float32, name="x")],
            ).get_concrete_function(),
            "parameters": tf.function(
                self._parameters, input_signature=[]
            ).get_concrete_function(),
            "restore": tf.function(
                self._restore, input_signature=restore_specs
            ).get_concrete_function(),
            "set_learning_rate": tf.function(
                self._set_learning_rate,
                input_signature=[tf.TensorSpec([], tf.float32, name="lr")],
            ).get_concrete_function(),
        }
        if self.proximal:
            sigs["set_proximal_mu"] = tf.function(
                self._set_proximal_mu,
                input_signature=[tf.TensorSpec([], tf.float32, name="mu")],
            ).get_concrete_function()
        if self.scaffold:
            sigs["set_correction"] = tf.function(
                self._set_correction, input_signature=restore_specs
            ).get_concrete_function()
        return sigs

    def loss_and_step(self, x: tf.Tensor, y: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        """Loss of the batch before the step; applies one optimizer step."""
        with tf.GradientTape() as tape:
            loss = ops.softmax_cross_entropy(self._logits(self.w, x), y, mask)
        grads = tape.gradient(loss, self.w)
        if (
            self.proximal
        ):  # d/dw of mu/2 ||w - w_g||^2 (the loss reported is the data loss)
            grads = [
                g + self.mu * (w - a)
                for g, w, a in zip(grads, self.w, self.anchor, strict=True)
            ]
        self.opt.apply(self.w, grads)
        if self.scaffold:  # y <- y - lr (c - c_i), after the optimizer step
            for w, c in zip(self.w, self.correction, strict=True):
                w.assign_sub(self.opt.lr * c)
        return loss

    def _train(
        self, x: tf.Tensor, y: tf.Tensor, mask: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        return {"loss": self.loss_and_step(x, y, mask)}

    def _train_dynamic(self, x: tf.Tensor, y: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"loss": self.loss_and_step(x, y, tf.ones_like(y[:, 0]))}

    def _infer(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = self._logits(self.w, x)
        return {"logits": logits, "output": tf.nn.softmax(logits)}

    def _parameters(self) -> dict[str, tf.Tensor]:
        return {f"a{i}": tf.identity(v) for i, v in enumerate(self.w)}

    def _restore(self, *arrays: tf.Tensor) -> dict[str, tf.Tensor]:
        for v, a in zip(self.w, arrays, strict=True):
            v.assign(a)
        if self.proximal:
            for anchor, a in zip(self.anchor, arrays, strict=True):
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
        for c, a in zip(self.correction, arrays, strict=True):
            c.assign(a)
        return {
            "norm": tf.add_n([tf.reduce_sum(tf.square(c)) for c in self.correction])
        }
