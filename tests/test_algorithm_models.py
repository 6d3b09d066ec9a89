"""FedProx and SCAFFOLD inside the `.tflite`: gradients by hand and against TF."""

from __future__ import annotations

import numpy as np
import pytest

from fedtflite.data import FashionMnist
from fedtflite.errors import SignatureMismatchError
from fedtflite.models.cache import cached_model
from fedtflite.models.specs import ModelSpec, OptimizerSpec
from fedtflite.runtime import ClientModel

LR = 0.1


def _model(**flags: bool) -> ClientModel:
    spec = ModelSpec("mlp", OptimizerSpec("sgd", LR), seed=3, **flags)
    return ClientModel(cached_model(spec))


@pytest.fixture(scope="module")
def batch(data: FashionMnist) -> tuple[np.ndarray, np.ndarray]:
    train = data.train
    return train.images[:32], train.labels[:32]


def _step(model: ClientModel, batch: tuple[np.ndarray, np.ndarray]) -> list[np.ndarray]:
    x, y = batch
    model.fit(x, y, epochs=1, batch_size=32, rng=np.random.default_rng(0))
    return model.parameters()


def _max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.abs(u - v).max()) for u, v in zip(a, b, strict=True))


def _two_prox_steps(
    mu: float, batch: tuple[np.ndarray, np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """``(w_g, a1, a2)``: restored weights, after one and after two FedProx steps."""
    prox = _model(proximal=True)
    w_g = prox.parameters()
    prox.restore(w_g)
    prox.set_proximal_mu(mu)
    a1 = _step(prox, batch)
    a2 = _step(prox, batch)  # the anchor is still w_g: only restore moves it
    return w_g, a1, a2


def test_proximal_step_by_hand(batch):
    """a1 = plain step from w_g (w - w_g = 0); a2 = step from a1 - lr mu (a1 - w_g)."""
    mu = 0.5
    w_g, a1, a2 = _two_prox_steps(mu, batch)
    plain = _model()
    plain.restore(w_g)
    assert _max_diff(a1, _step(plain, batch)) < 1e-7
    plain.restore(a1)
    expected = [
        p - LR * mu * (w - g)
        for p, w, g in zip(_step(plain, batch), a1, w_g, strict=True)
    ]
    assert _max_diff(a2, expected) < 1e-6
    assert _max_diff(a2, _step(plain, batch)) > 1e-4  # the term matters here


def test_proximal_gradient_matches_tensorflow(batch):
    tf = pytest.importorskip("tensorflow")
    mu = 0.3
    w_g, a1, a2 = _two_prox_steps(mu, batch)
    x, y = batch
    tw = [tf.Variable(w) for w in a1]
    with tf.GradientTape() as tape:
        h = tf.nn.relu(tf.reshape(x, [-1, 784]) @ tw[0] + tw[1])
        logits = h @ tw[2] + tw[3]
        onehot = np.eye(10, dtype=np.float32)[y]
        ce = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(onehot, logits))
        prox_term = tf.add_n(
            [tf.reduce_sum((v - g) ** 2) for v, g in zip(tw, w_g, strict=True)]
        )
        loss = ce + mu / 2 * prox_term
    grads = tape.gradient(loss, tw)
    expected = [w - LR * g.numpy() for w, g in zip(a1, grads, strict=True)]
    assert _max_diff(a2, expected) < 1e-6


def test_scaffold_step_adds_the_correction(batch):
    sc, plain = _model(scaffold=True), _model()
    w0 = sc.parameters()
    rng = np.random.default_rng(4)
    corr = [rng.normal(0, 0.01, w.shape).astype(np.float32) for w in w0]
    sc.restore(w0)
    sc.set_correction(corr)
    plain.restore(w0)
    expected = [p - LR * c for p, c in zip(_step(plain, batch), corr, strict=True)]
    assert _max_diff(_step(sc, batch), expected) < 1e-6


def test_scaffold_restore_zeroes_the_correction(batch):
    sc, plain = _model(scaffold=True), _model()
    w0 = sc.parameters()
    sc.restore(w0)
    sc.set_correction([np.ones_like(w) for w in w0])
    sc.restore(w0)  # a new client: no correction until it sets its own
    plain.restore(w0)
    for a, b in zip(_step(sc, batch), _step(plain, batch), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-7)


def test_plain_model_has_no_algorithm_knobs():
    plain = _model()
    with pytest.raises(SignatureMismatchError, match="set_proximal_mu"):
        plain.set_proximal_mu(0.1)
    with pytest.raises(SignatureMismatchError, match="set_correction"):
        plain.set_correction(plain.parameters())
