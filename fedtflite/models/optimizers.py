"""Optimizers whose state lives in plain `tf.Variable`s baked into the `.tflite`.

Keras optimizers keep their slots in variables a `tf.Module` does not track, so
the converted file would come out without them; these hold every slot (learning
rate, momentum buffers, Adam's m, v and step) as variables of the module.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from fedtflite.models.specs import OPTIMIZERS, OptimizerSpec

__all__ = ["Optimizer"]


class Optimizer(tf.Module):  # type: ignore[misc]
    """Applies one update to a list of variables; `reset` zeroes its state.

    `reset` sets momentum buffers, Adam's m and v to zero and Adam's step to 0.
    It leaves the learning rate alone.
    """

    def __init__(self, spec: OptimizerSpec, variables: Sequence[tf.Variable]):
        super().__init__(name="optimizer")
        if spec.name not in OPTIMIZERS:
            raise ValueError(f"optimizer {spec.name!r} is not one of {OPTIMIZERS}")
        self.spec = spec
        self.lr = tf.Variable(spec.learning_rate, dtype=tf.float32, name="lr")
        self.slots: list[tf.Variable] = []
        n_slots = {"sgd": 1 if spec.momentum else 0, "adam": 2}[spec.name]
        for v in variables:
            for k in range(n_slots):
                self.slots.append(
                    tf.Variable(tf.zeros_like(v), name=f"slot{k}_{v.name[:-2]}")
                )
        self.step = tf.Variable(0.0, dtype=tf.float32, name="step")

    def reset(self) -> None:
        """Zero every slot and the step count."""
        for s in self.slots:
            s.assign(tf.zeros_like(s))
        self.step.assign(0.0)

    def apply(
        self, variables: Sequence[tf.Variable], grads: Sequence[tf.Tensor]
    ) -> None:
        """One update of ``variables`` with ``grads`` (same order)."""
        spec = self.spec
        if spec.weight_decay:
            grads = [
                g + spec.weight_decay * v for g, v in zip(grads, variables, strict=True)
            ]
        if spec.name == "sgd":
            for i, (v, g) in enumerate(zip(variables, grads, strict=True)):
                if spec.momentum:
                    buf = self.slots[i]
                    buf.assign(spec.momentum * buf + g)
                    g = buf
                v.assign_sub(self.lr * g)
            return
        self.step.assign_add(1.0)
        b1, b2 = spec.beta_1, spec.beta_2
        lr_t = (
            self.lr
            * tf.sqrt(1.0 - tf.pow(b2, self.step))
            / (1.0 - tf.pow(b1, self.step))
        )
        for i, (v, g) in enumerate(zip(variables, grads, strict=True)):
            m, s = self.slots[2 * i], self.slots[2 * i + 1]
            m.assign_add((g - m) * (1.0 - b1))
            s.assign_add((tf.square(g) - s) * (1.0 - b2))
            v.assign_sub(lr_t * m / (tf.sqrt(s) + spec.epsilon))
