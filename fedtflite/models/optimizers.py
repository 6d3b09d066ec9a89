"""Keras 3's update rules, their state in plain `tf.Variable`s inside the `.tflite`.

Keras optimizers keep their slots in variables a `tf.Module` does not track, so
the converted file would come out without them; these hold every slot (learning
rate, momentum buffers, Adam's m, v and step, RMSprop's averages) as variables
of the module. Each update follows the ``update_step`` of the Keras optimizer of
that name, operation for operation, so one `train` step equals one Keras
``train_on_batch`` (``tests/test_keras_import.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from fedtflite.models.specs import UPDATE_RULES, OptimizerSpec

__all__ = ["Optimizer"]


def _slot_names(spec: OptimizerSpec) -> tuple[str, ...]:
    """The per-variable state of an update rule, in slot order."""
    if spec.name == "sgd":
        return ("momentum",) if spec.momentum else ()
    if spec.name in ("adam", "adamw"):
        return ("m", "v", "v_hat") if spec.amsgrad else ("m", "v")
    names = ["velocity"]  # rmsprop
    if spec.momentum > 0:
        names.append("momentum")
    if spec.centered:
        names.append("average_grad")
    return tuple(names)


class Optimizer(tf.Module):  # type: ignore[misc]
    """Applies one update to a list of variables; `reset` zeroes its state.

    `reset` sets every slot (momentum buffers, Adam's m and v, RMSprop's
    averages) to zero and the step count to 0. It leaves the learning rate alone.
    """

    def __init__(self, spec: OptimizerSpec, variables: Sequence[tf.Variable]):
        super().__init__(name="optimizer")
        if spec.name not in UPDATE_RULES:
            raise ValueError(f"optimizer {spec.name!r} is not one of {UPDATE_RULES}")
        if spec.nesterov and spec.momentum_form != "keras":
            raise ValueError("Nesterov momentum is implemented in Keras' form only")
        self.spec = spec
        self.lr = tf.Variable(spec.learning_rate, dtype=tf.float32, name="lr")
        self._names = _slot_names(spec)
        self.slots: list[dict[str, tf.Variable]] = [
            {
                name: tf.Variable(tf.zeros_like(v), name=f"{name}_{v.name[:-2]}")
                for name in self._names
            }
            for v in variables
        ]
        self.step = tf.Variable(0.0, dtype=tf.float32, name="step")

    def reset(self) -> None:
        """Zero every slot and the step count."""
        for slots in self.slots:
            for s in slots.values():
                s.assign(tf.zeros_like(s))
        self.step.assign(0.0)

    def apply(
        self, variables: Sequence[tf.Variable], grads: Sequence[tf.Tensor]
    ) -> None:
        """One update of ``variables`` with ``grads`` (same order)."""
        spec = self.spec
        if spec.weight_decay:  # coupled L2 (PyTorch's weight_decay)
            grads = [
                g + spec.weight_decay * v for g, v in zip(grads, variables, strict=True)
            ]
        if spec.decoupled_weight_decay:  # Keras' _apply_weight_decay, first
            for v in variables:
                v.assign_sub(v * spec.decoupled_weight_decay * self.lr)
        if spec.name == "sgd":
            self._sgd(variables, grads)
        elif spec.name == "rmsprop":
            self._rmsprop(variables, grads)
        else:
            self._adam(variables, grads)
        self.step.assign_add(1.0)

    def _sgd(
        self, variables: Sequence[tf.Variable], grads: Sequence[tf.Tensor]
    ) -> None:
        spec, lr = self.spec, self.lr
        for v, g, slots in zip(variables, grads, self.slots, strict=True):
            if not spec.momentum:
                v.assign_sub(lr * g)
            elif spec.momentum_form == "pytorch":
                buf = slots["momentum"]
                buf.assign(spec.momentum * buf + g)
                v.assign_sub(lr * buf)
            else:
                m = slots["momentum"]
                m.assign(m * spec.momentum - g * lr)
                if spec.nesterov:
                    v.assign_add(m * spec.momentum - g * lr)
                else:
                    v.assign_add(m)

    def _adam(
        self, variables: Sequence[tf.Variable], grads: Sequence[tf.Tensor]
    ) -> None:
        spec = self.spec
        b1, b2 = spec.beta_1, spec.beta_2
        t = self.step + 1.0
        alpha = self.lr * tf.sqrt(1.0 - tf.pow(b2, t)) / (1.0 - tf.pow(b1, t))
        for v, g, slots in zip(variables, grads, self.slots, strict=True):
            m, s = slots["m"], slots["v"]
            m.assign_add((g - m) * (1.0 - b1))
            s.assign_add((tf.square(g) - s) * (1.0 - b2))
            if spec.amsgrad:
                s_hat = slots["v_hat"]
                s_hat.assign(tf.maximum(s_hat, s))
                s = s_hat
            v.assign_sub((m * alpha) / (tf.sqrt(s) + spec.epsilon))

    def _rmsprop(
        self, variables: Sequence[tf.Variable], grads: Sequence[tf.Tensor]
    ) -> None:
        spec, lr, rho = self.spec, self.lr, self.spec.rho
        for v, g, slots in zip(variables, grads, self.slots, strict=True):
            velocity = slots["velocity"]
            velocity.assign(rho * velocity + (1.0 - rho) * tf.square(g))
            if spec.centered:
                avg = slots["average_grad"]
                avg.assign(rho * avg + (1.0 - rho) * g)
                denominator = velocity - tf.square(avg) + spec.epsilon
            else:
                denominator = velocity + spec.epsilon
            increment = (lr * g) / tf.sqrt(denominator)
            if spec.momentum > 0:
                m = slots["momentum"]
                m.assign(spec.momentum * m + increment)
                v.assign_sub(m)
            else:
                v.assign_sub(increment)
