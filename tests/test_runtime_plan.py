"""The client hot path: training plans, staged weights, views of the weights.

``run_plan(plan_fit(...))`` must train exactly as ``fit`` (bit-equal weights,
same loss and steps), however the plan is made (in memory or as it runs, from
float32 or from uint8 images) and whenever it runs. A staged restore must be
indistinguishable from restoring the list. Every test runs the real models on a
few dozen real Fashion-MNIST examples.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from fedtflite.data import FashionMnist, load_train_uint8, to_float
from fedtflite.errors import DataShapeError, NonFiniteError, WeightsMismatchError
from fedtflite.runtime import PLAN_ROWS, ClientModel, FitResult, StagedWeights

Weights = list[np.ndarray]


def _same(a: Weights, b: Weights) -> bool:
    return len(a) == len(b) and all(
        x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b, strict=True)
    )


def _fit(
    model: ClientModel, x: np.ndarray, y: np.ndarray, seed: int, **kw: Any
) -> FitResult:
    kw = {"epochs": 2, "batch_size": 32, **kw}
    return model.fit(x, y, rng=np.random.default_rng(seed), **kw)


def _planned(
    model: ClientModel, x: np.ndarray, y: np.ndarray, seed: int, **kw: Any
) -> FitResult:
    kw = {"epochs": 2, "batch_size": 32, **kw}
    return model.run_plan(model.plan_fit(x, y, rng=np.random.default_rng(seed), **kw))


@pytest.fixture(scope="module")
def models(mlp_bytes: bytes, cnn_bytes: bytes) -> dict[str, bytes]:
    return {"mlp": mlp_bytes, "cnn": cnn_bytes}


# -- plan_fit + run_plan is fit --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "n", "kw", "steps"),
    [
        ("mlp", 70, {}, 6),  # dynamic batch: 32, 32, then a partial 6, per epoch
        ("mlp", 64, {}, 4),  # full batches only
        ("cnn", 45, {}, 4),  # fixed batch 32: 13 real rows padded and masked
        ("mlp", 70, {"max_steps": 4}, 4),  # cut inside the second epoch
        ("cnn", 45, {"max_steps": 1}, 1),
        ("mlp", 70, {"epochs": 0}, 0),
    ],
    ids=["mlp-partial", "mlp-full", "cnn-mask", "mlp-max", "cnn-max", "no-epochs"],
)
def test_run_plan_of_plan_fit_is_fit(
    models: dict[str, bytes],
    data: FashionMnist,
    name: str,
    n: int,
    kw: dict[str, Any],
    steps: int,
) -> None:
    x, y = data.train.images[100 : 100 + n], data.train.labels[100 : 100 + n]
    fitted, planned = ClientModel(models[name]), ClientModel(models[name])
    initial = fitted.parameters()

    a, b = _fit(fitted, x, y, 3, **kw), _planned(planned, x, y, 3, **kw)

    assert (b.num_steps, b.num_examples) == (a.num_steps, a.num_examples) == (steps, n)
    assert b.loss == a.loss or (np.isnan(a.loss) and np.isnan(b.loss))
    assert _same(planned.parameters(), fitted.parameters())
    assert steps == 0 or not _same(planned.parameters(), initial)  # it trained


def test_plans_made_ahead_train_as_fit_in_turn(
    mlp_bytes: bytes, data: FashionMnist
) -> None:
    # A worker plans several clients, then runs them: a plan must hold its own
    # inputs, not buffers that planning the next client reuses.
    x, y = data.train.images, data.train.labels
    shards = [(x[0:50], y[0:50]), (x[50:83], y[50:83]), (x[83:90], y[83:90])]
    fitted, planned = ClientModel(mlp_bytes), ClientModel(mlp_bytes)
    start = fitted.parameters()

    expected = []
    for k, (xs, ys) in enumerate(shards):
        fitted.restore(start)
        loss = _fit(fitted, xs, ys, k).loss
        expected.append((loss, fitted.parameters()))
    plans = [
        planned.plan_fit(xs, ys, epochs=2, batch_size=32, rng=np.random.default_rng(k))
        for k, (xs, ys) in enumerate(shards)
    ]
    for plan, (loss, weights) in zip(plans, expected, strict=True):
        planned.restore(start)
        assert planned.run_plan(plan).loss == loss
        assert _same(planned.parameters(), weights)


def test_plan_fit_validates_at_once(mlp_bytes: bytes, data: FashionMnist) -> None:
    # Even a plan made as it runs (over PLAN_ROWS rows) checks its data when made.
    model = ClientModel(mlp_bytes)
    n = PLAN_ROWS + 1
    x, y = data.train.images[:n], data.train.labels[:n].copy()
    y[7] = 10
    with pytest.raises(DataShapeError, match=r"labels span 0\.\.10"):
        model.plan_fit(x, y, epochs=1, batch_size=32, rng=np.random.default_rng(0))


@pytest.mark.parametrize(
    ("n", "epochs", "held"), [(PLAN_ROWS // 2, 2, True), (PLAN_ROWS // 2 + 1, 2, False)]
)
def test_a_plan_over_plan_rows_is_made_as_it_runs(
    mlp_bytes: bytes, data: FashionMnist, n: int, epochs: int, held: bool
) -> None:
    x, y = data.train.images[:n], data.train.labels[:n]
    fitted, planned = ClientModel(mlp_bytes), ClientModel(mlp_bytes)
    rng = np.random.default_rng(11)
    plan = planned.plan_fit(x, y, epochs=epochs, batch_size=32, rng=rng)
    draws_after_planning = rng.bit_generator.state

    assert isinstance(plan.steps, tuple) == held
    steps = -(-n // 32) * epochs
    if held:  # every input gathered once: float32 pixels, one-hot float32 labels
        assert len(plan.steps) == steps
        assert plan.bytes_held == epochs * n * (784 + 10) * 4
    else:  # lazy: nothing gathered and no draw made until it runs
        assert plan.bytes_held == 0
        assert draws_after_planning == np.random.default_rng(11).bit_generator.state

    fit = _fit(fitted, x, y, 11, epochs=epochs)
    run = planned.run_plan(plan)
    assert (run.num_steps, run.loss) == (fit.num_steps, fit.loss)
    assert run.num_steps == steps
    assert _same(planned.parameters(), fitted.parameters())


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_uint8_images_converted_per_epoch_train_as_float_images(
    models: dict[str, bytes], data: FashionMnist, name: str
) -> None:
    rows = np.arange(200, 245)  # 45: a partial batch (masked on the cnn)
    stored, labels = load_train_uint8()
    x8, y = stored[rows], labels[rows]
    assert np.array_equal(to_float(x8), data.train.images[rows])  # same pixels

    converted: list[np.ndarray] = []

    def convert(images: np.ndarray) -> np.ndarray:
        converted.append(images.copy())
        return to_float(images)

    model_f, model_8 = ClientModel(models[name]), ClientModel(models[name])
    plan_f = model_f.plan_fit(
        data.train.images[rows],
        y,
        epochs=2,
        batch_size=32,
        rng=np.random.default_rng(4),
    )
    plan_8 = model_8.plan_fit(
        x8, y, epochs=2, batch_size=32, rng=np.random.default_rng(4), convert=convert
    )

    # once per epoch, on that epoch's rows in its shuffled order (the draws of
    # a model without noise inputs are the permutations): not per batch, not
    # the stored rows before the gather
    shuffles = np.random.default_rng(4)
    assert len(converted) == 2
    for images in converted:
        assert images.dtype == np.uint8
        assert np.array_equal(images, x8[shuffles.permutation(45)])
    assert isinstance(plan_f.steps, tuple) and isinstance(plan_8.steps, tuple)
    for (feed_f, real_f, ep_f), (feed_8, real_8, ep_8) in zip(
        plan_f.steps, plan_8.steps, strict=True
    ):
        assert (real_f, ep_f) == (real_8, ep_8)
        assert feed_f.keys() == feed_8.keys()
        for k in feed_f:
            assert feed_8[k].dtype == feed_f[k].dtype
            assert np.array_equal(feed_8[k], feed_f[k])
    assert model_8.run_plan(plan_8).loss == model_f.run_plan(plan_f).loss
    assert _same(model_8.parameters(), model_f.parameters())


def test_uint8_images_without_convert_are_refused(
    mlp_bytes: bytes, data: FashionMnist
) -> None:
    stored, labels = load_train_uint8()
    model = ClientModel(mlp_bytes)
    with pytest.raises(DataShapeError, match="images are uint8; expected float32"):
        model.plan_fit(
            stored[:10],
            labels[:10],
            epochs=1,
            batch_size=32,
            rng=np.random.default_rng(0),
        )


# -- staged weights --------------------------------------------------------------------


def _perturbed(model: ClientModel, seed: int) -> Weights:
    rng = np.random.default_rng(seed)
    return [
        w + 0.01 * rng.standard_normal(w.shape).astype(np.float32)
        for w in model.parameters()
    ]


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_staged_restore_after_another_client_is_a_fresh_restore(
    models: dict[str, bytes], data: FashionMnist, name: str
) -> None:
    # Between two restores of the same staged weights another client trains
    # (a partial batch: the mlp's train inputs are resized and re-allocated):
    # the second client must start from the staged weights, with no optimizer
    # state, exactly as on a fresh model restoring the plain list.
    x, y = data.train.images, data.train.labels
    staged_model = ClientModel(models[name])
    global_weights = _perturbed(staged_model, 0)
    staged = staged_model.stage(global_weights)

    def client(model: ClientModel, weights: Any, lo: int, hi: int) -> FitResult:
        model.restore(weights)
        return _fit(model, x[lo:hi], y[lo:hi], lo)

    client(staged_model, staged, 0, 45)
    after_first = staged_model.parameters()
    staged_model.restore(staged)
    assert _same(staged_model.parameters(), global_weights)
    second = client(staged_model, staged, 45, 90)

    fresh = ClientModel(models[name])
    expected = client(fresh, global_weights, 45, 90)
    assert second.loss == expected.loss
    assert _same(staged_model.parameters(), fresh.parameters())
    assert not _same(after_first, fresh.parameters())  # not vacuous


def test_staged_restore_copies_only_when_the_tensors_may_differ(
    mlp_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = ClientModel(mlp_bytes)
    runner = model._restore
    copies: list[int] = []
    real_set = runner._set

    def counting_set(inputs: dict[str, np.ndarray]) -> None:
        copies.append(len(inputs))
        real_set(inputs)

    monkeypatch.setattr(runner, "_set", counting_set)
    w_a, w_b = _perturbed(model, 1), _perturbed(model, 2)
    a, b = model.stage(w_a), model.stage(w_b)
    names = len(w_a)

    model.restore(a)
    model.restore(a)  # the tensors still hold a: restore only re-runs
    assert copies == [names] and _same(model.parameters(), w_a)
    model.restore(b)
    assert copies == [names] * 2 and _same(model.parameters(), w_b)
    model.restore(a)  # a is no longer in the tensors
    assert copies == [names] * 3 and _same(model.parameters(), w_a)
    model.restore(w_b)  # a plain list: always copied, over the staged a
    assert copies == [names] * 4 and _same(model.parameters(), w_b)
    model.restore(a)
    assert copies == [names] * 5 and _same(model.parameters(), w_a)

    # an allocation may move the tensors: the guard counts them
    runner.allocations += 1
    model.restore(a)
    assert copies == [names] * 6 and _same(model.parameters(), w_a)


def test_weights_staged_by_another_model_are_validated_and_copied(
    mlp_bytes: bytes, cnn_bytes: bytes
) -> None:
    mlp, other_mlp, cnn = (
        ClientModel(mlp_bytes),
        ClientModel(mlp_bytes),
        ClientModel(cnn_bytes),
    )
    w = _perturbed(other_mlp, 3)
    staged_elsewhere = other_mlp.stage(w)
    mlp.restore(staged_elsewhere)
    assert _same(mlp.parameters(), w)
    mlp.restore(mlp.parameters())  # what it holds now is not `w`...
    mlp.restore(_perturbed(mlp, 4))
    mlp.restore(staged_elsewhere)  # ...so the other model's staged `w` is copied
    assert _same(mlp.parameters(), w)

    with pytest.raises(WeightsMismatchError, match=r"restore got \d+ arrays"):
        cnn.restore(staged_elsewhere)  # the mlp's weights do not fit the cnn


def test_staged_weights_are_read_only_copies(mlp_bytes: bytes) -> None:
    model = ClientModel(mlp_bytes)
    w = _perturbed(model, 5)
    kept = [a.copy() for a in w]
    staged = model.stage(w)

    assert isinstance(staged, StagedWeights) and len(staged) == len(w)
    assert all(not a.flags.writeable for a in staged)
    with pytest.raises(ValueError, match="read-only"):
        staged[0][0, 0] = 1.0
    w[0][0, 0] += 1.0  # the caller's arrays stay the caller's
    assert _same(list(staged), kept)
    assert staged[-1] is staged.arrays[-1]
    model.restore(staged)
    assert _same(model.parameters(), kept)


def test_staging_the_wrong_weights_fails_like_restore(mlp_bytes: bytes) -> None:
    model = ClientModel(mlp_bytes)
    w = model.parameters()
    transposed = [*w[:-2], w[-2].T.copy(), w[-1]]
    for bad, message in [
        (w[:-1], rf"restore got {len(w) - 1} arrays; the model has {len(w)}"),
        (transposed, r"restore a\d+ got float32\[10, \d+\]; expected"),
        ([*w[:-1], w[-1].astype(np.float64)], r"got float64\[10\]"),
    ]:
        with pytest.raises(WeightsMismatchError, match=message):
            model.stage(bad)
        with pytest.raises(WeightsMismatchError, match=message):
            model.restore(bad)


# -- learning rate re-set in place ----------------------------------------------------


def test_an_unchanged_learning_rate_is_still_applied(
    mlp_bytes: bytes, data: FashionMnist
) -> None:
    # The value is remembered so an unchanged rate is not copied again; the
    # signature still runs, and a change in between is not lost.
    x, y = data.train.images[:40], data.train.labels[:40]
    model = ClientModel(mlp_bytes)
    start = model.parameters()

    def trains(lr: float) -> bool:
        model.restore(start)
        model.set_learning_rate(lr)
        _fit(model, x, y, 0, epochs=1)
        return not _same(model.parameters(), start)

    assert not trains(0.0)
    assert not trains(0.0)
    assert trains(0.05)
    assert not trains(0.0)
    assert trains(0.05)
    assert trains(0.05)

    reference = ClientModel(mlp_bytes)
    reference.set_learning_rate(0.05)
    _fit(reference, x, y, 0, epochs=1)
    assert _same(model.parameters(), reference.parameters())


# -- weights as views, and the finite check --------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_parameter_views_equal_copies_and_are_read_only(
    models: dict[str, bytes], data: FashionMnist, name: str
) -> None:
    model = ClientModel(models[name])
    _fit(model, data.train.images[:40], data.train.labels[:40], 0, epochs=1)
    copies = model.parameters()
    views = model.parameters(copy=False, check_finite=True)

    assert _same(views, copies)
    assert [v.shape for v in views] == [p.shape for p in model.contract.parameters]
    for v in views:
        assert not v.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            v.reshape(-1)[0] = 0.0
    assert all(c.flags.writeable for c in copies)  # copies stay the caller's
    assert _same(model.parameters(), copies)


@pytest.mark.parametrize("copy", [True, False])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_check_finite_finds_one_bad_value(
    mlp_bytes: bytes, copy: bool, bad: float
) -> None:
    model = ClientModel(mlp_bytes)
    w = model.parameters()
    w[0][5, 7] = bad
    model.restore(w)
    with pytest.raises(NonFiniteError, match="parameter a0 holds 1 non-finite value"):
        model.parameters(check_finite=True, copy=copy)


@pytest.mark.parametrize("copy", [True, False])
def test_huge_finite_weights_pass_without_a_warning(
    mlp_bytes: bytes, copy: bool
) -> None:
    # Their dot product overflows to inf: the element-wise check decides, quietly.
    model = ClientModel(mlp_bytes)
    w = model.parameters()
    w[0][:3] = 3e38
    w[-1][:] = -3e38
    model.restore(w)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = model.parameters(check_finite=True, copy=copy)
    assert _same(list(got), w)


def test_weights_staged_by_a_freed_model_are_checked_by_its_successor(
    mlp_bytes: bytes, cnn_bytes: bytes
) -> None:
    # A staged set names its model by a token, not by id(): a model created
    # where a freed one lived (same id) must not trust the old model's arrays.
    first = ClientModel(mlp_bytes)
    staged = first.stage(first.parameters())
    del first
    successor = ClientModel(cnn_bytes)
    with pytest.raises(WeightsMismatchError):
        successor.restore(staged)


def test_without_litert_internals_restore_and_learning_rate_set_every_call(
    mlp_bytes: bytes,
) -> None:
    # On a LiteRT whose interpreter lacks what _Runner uses, the runners fall
    # back to SignatureRunner, which sets the inputs on every call: a staged
    # restore or an unchanged learning rate must then call it again, never
    # re-invoke on inputs it did not keep.
    model = ClientModel(mlp_bytes)
    weights = model.parameters()
    staged = model.stage([w + 1 for w in weights])
    for runner in (model._restore, model._set_lr):
        assert runner is not None
        runner._wrapper = None
    for _ in range(2):
        model.restore(staged)
        model.set_learning_rate(0.05)
        model.set_learning_rate(0.05)
    for got, want in zip(model.parameters(), staged, strict=True):
        np.testing.assert_array_equal(got, want)
