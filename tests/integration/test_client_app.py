"""The ClientApp's cohort handling on a real worker: real `.tflite`, LiteRT, data.

The handlers are called directly with Flower Messages (no Ray): a cohort of three
clients, one of which diverges. The bad client is reported on its own; the
others' pre-aggregated update is exactly the example-weighted mean of their
per-client updates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict

import clients.worker as worker_module
from clients.client_app import evaluate, train
from clients.worker import PreparedClient, Worker
from fedtflite.errors import ConfigError
from fedtflite.protocol import keys
from fedtflite.runtime import ClientModel
from fedtflite.simulation import SimulationConfig
from fedtflite.simulation.prepare import PreparedRun, prepare_run

pytestmark = pytest.mark.integration

COHORT, BAD = [0, 2, 5], 2


@pytest.fixture(scope="module")
def run(
    small_config: Callable[..., SimulationConfig],
    tmp_path_factory: pytest.TempPathFactory,
) -> PreparedRun:
    return prepare_run(small_config(), tmp_path_factory.mktemp("cohort") / "run")


@pytest.fixture(autouse=True)
def flower_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages need Flower's task identity, which a running app would set."""
    from flwr.supercore.task_identity import TaskIdentity

    for attr in ("_run_id", "_task_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, attr, 1, raising=False)


@pytest.fixture(autouse=True)
def one_bad_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Client ``BAD``'s training images hold NaN, so its loss is NaN."""
    real = Worker.prepare

    def prepare(self: Worker, client_id: int, *args: Any, **kw: Any) -> PreparedClient:
        prepared = real(self, client_id, *args, **kw)
        if client_id != BAD:
            return prepared
        steps = tuple(
            ({**feed, "x": np.full_like(feed["x"], np.nan)}, rows, epoch)
            for feed, rows, epoch in prepared.plan.steps
        )
        plan = dataclasses.replace(prepared.plan, steps=steps)
        return dataclasses.replace(prepared, plan=plan)

    monkeypatch.setattr(Worker, "prepare", prepare)
    worker_module.get_worker.cache_clear()
    yield
    worker_module.get_worker.cache_clear()


def _message(run: PreparedRun, kind: str, per_client: bool) -> Message:
    model = ClientModel(Path(run.settings.model_path))
    names = [p.name for p in model.contract.parameters]
    arrays = ArrayRecord(
        array_dict={n: Array(w) for n, w in zip(names, model.parameters(), strict=True)}
    )
    config = ConfigRecord(run.settings.to_config())
    config["server-round"] = 1
    config[keys.COHORT] = COHORT
    config[keys.PER_CLIENT] = int(per_client)
    content = RecordDict({keys.ARRAYS: arrays, keys.CONFIG: config})
    return Message(content=content, message_type=kind, dst_node_id=1)


def test_one_bad_client_never_fails_its_cohort(run: PreparedRun) -> None:
    reply = train(_message(run, "train", per_client=False), None)  # type: ignore[arg-type]
    status = reply.content.config_records[keys.STATUS]

    assert status[keys.OK] == [0, 5]
    assert status[keys.FAILED] == [BAD]
    (error,) = status[keys.ERRORS]
    assert error.startswith(f"client {BAD}: ") and "loss nan" in error
    assert reply.content.metric_records[keys.METRICS][keys.NUM_EXAMPLES] > 0


def test_failures_in_prepare_and_in_training_keep_cohort_order(
    run: PreparedRun,
) -> None:
    # Client 6 does not exist (6 clients: 0..5): it fails when prepared, ahead
    # of BAD's training, which fails later; the reply lists them as the cohort.
    msg = _message(run, "train", per_client=True)
    msg.content.config_records[keys.CONFIG][keys.COHORT] = [0, BAD, 6, 5]
    status = train(msg, None).content.config_records[keys.STATUS]  # type: ignore[arg-type]

    assert status[keys.OK] == [0, 5]
    assert status[keys.FAILED] == [BAD, 6]
    bad, missing = status[keys.ERRORS]
    assert bad.startswith(f"client {BAD}: ") and "loss nan" in bad
    assert missing == "client 6: client-id 6 out of range 0..5"


def test_a_prepared_client_trains_as_fit_on_its_float_data(run: PreparedRun) -> None:
    # The worker plans from the stored uint8 images, converted per epoch; the
    # same client through ClientModel.fit on its float32 data ends bit-equal.
    worker = Worker(run.settings)
    start = worker.model.parameters()
    staged = worker.model.stage(start)
    update = worker.run_prepared(worker.prepare(0, 3), staged, copy_weights=False)
    assert all(not w.flags.writeable for w in update.weights)
    views = [w.copy() for w in update.weights]  # valid until the next client
    copied = worker.run_prepared(worker.prepare(0, 3), staged)  # restores again
    assert all(w.flags.writeable for w in copied.weights)

    model = ClientModel(Path(run.settings.model_path))
    model.restore(start)
    if run.settings.learning_rate is not None:
        model.set_learning_rate(run.settings.learning_rate)
    data = worker.client_data(0)
    x, y = data.train_images, data.train_labels
    assert x.dtype == np.float32
    fit = model.fit(
        x,
        y,
        epochs=run.settings.local_epochs,
        batch_size=run.settings.batch_size,
        rng=worker.rng(0, 3),
    )
    expected = model.parameters()
    assert (copied.num_examples, copied.loss) == (fit.num_examples, fit.loss)
    assert update.loss == fit.loss
    for a, b, e in zip(views, copied.weights, expected, strict=True):
        assert np.array_equal(a, e) and np.array_equal(b, e)
    assert not all(np.array_equal(a, s) for a, s in zip(expected, start, strict=True))


def test_pre_aggregated_reply_is_the_weighted_mean_of_per_client_replies(
    run: PreparedRun,
) -> None:
    cohort = train(_message(run, "train", per_client=False), None)  # type: ignore[arg-type]
    single = train(_message(run, "train", per_client=True), None)  # type: ignore[arg-type]

    ok = single.content.config_records[keys.STATUS][keys.OK]
    assert ok == [0, 5]
    assert keys.client_key(keys.ARRAYS, BAD) not in single.content
    n = [
        single.content[keys.client_key(keys.METRICS, c)][keys.NUM_EXAMPLES] for c in ok
    ]
    arrays = [single.content[keys.client_key(keys.ARRAYS, c)] for c in ok]
    metrics = cohort.content[keys.METRICS]
    assert metrics[keys.NUM_EXAMPLES] == sum(n)
    for name in arrays[0]:
        expected = (n[0] * arrays[0][name].numpy() + n[1] * arrays[1][name].numpy()) / (
            n[0] + n[1]
        )
        np.testing.assert_allclose(
            cohort.content[keys.ARRAYS][name].numpy(), expected, rtol=0, atol=1e-6
        )


def test_evaluate_reports_the_cohort_weighted_metrics(run: PreparedRun) -> None:
    reply = evaluate(_message(run, "evaluate", per_client=False), None)  # type: ignore[arg-type]
    metrics = reply.content.metric_records[keys.METRICS]

    # Evaluation restores the global weights: the bad client's data are only
    # bad for training (NaN pixels in its train split), so every client counts.
    assert reply.content.config_records[keys.STATUS][keys.FAILED] == []
    assert metrics[keys.NUM_EXAMPLES] > 0
    assert 0.0 <= metrics[keys.EVAL_ACCURACY] <= 1.0


@pytest.fixture(scope="module")
def prox_run(
    small_config: Callable[..., SimulationConfig],
    tmp_path_factory: pytest.TempPathFactory,
) -> PreparedRun:
    return prepare_run(
        small_config("strategy=fedprox"), tmp_path_factory.mktemp("prox") / "run"
    )


def _drift(run: PreparedRun, mu: float) -> float:
    """How far client 0 moves from the global weights in one round."""
    msg = _message(run, "train", per_client=True)
    msg.content.config_records[keys.CONFIG][keys.COHORT] = [0]
    msg.content.config_records[keys.CONFIG][keys.PROXIMAL_MU] = mu
    reply = train(msg, None)  # type: ignore[arg-type]
    start = msg.content.array_records[keys.ARRAYS]
    end = reply.content[keys.client_key(keys.ARRAYS, 0)]
    return float(
        np.sqrt(sum(np.sum((end[n].numpy() - start[n].numpy()) ** 2) for n in start))
    )


def test_fedprox_mu_from_the_message_reaches_the_device(prox_run: PreparedRun) -> None:
    free, anchored = _drift(prox_run, 0.0), _drift(prox_run, 5.0)

    # The proximal gradient mu (w - w_g) pulls every step back toward w_g.
    assert 0 < anchored < 0.7 * free
    assert _drift(prox_run, 0.0) == free  # mu is set per message, not sticky


@pytest.fixture(scope="module")
def scaffold_run(
    small_config: Callable[..., SimulationConfig],
    tmp_path_factory: pytest.TempPathFactory,
) -> PreparedRun:
    return prepare_run(
        small_config("strategy=scaffold"), tmp_path_factory.mktemp("scaf") / "run"
    )


def test_scaffold_client_keeps_its_control_variate_in_its_own_storage(
    scaffold_run: PreparedRun,
) -> None:
    from fedtflite.algorithms.control_variates import scaffold_client_update

    run = scaffold_run
    model = ClientModel(Path(run.settings.model_path))
    names = [p.name for p in model.contract.parameters]
    rng = np.random.default_rng(1)
    c = [
        (1e-3 * rng.normal(size=p.shape)).astype(np.float32)
        for p in model.contract.parameters
    ]
    state = Path(run.settings.state_dir) / "client_0.npz"
    c_i = [np.zeros_like(a) for a in c]  # before its first round
    for server_round in (1, 2):
        msg = _message(run, "train", per_client=True)
        config = msg.content.config_records[keys.CONFIG]
        config[keys.COHORT], config["server-round"] = [0], server_round
        msg.content[keys.CONTROL] = ArrayRecord(
            array_dict={n: Array(a) for n, a in zip(names, c, strict=True)}
        )
        reply = train(msg, None)  # type: ignore[arg-type]
        arrays = reply.content[keys.client_key(keys.ARRAYS, 0)]
        metrics = reply.content[keys.client_key(keys.METRICS, 0)]
        steps = -(-int(metrics[keys.NUM_EXAMPLES]) // run.settings.batch_size)
        x = [msg.content[keys.ARRAYS][n].numpy() for n in names]
        y = [arrays[n].numpy() for n in names]
        expected, delta = scaffold_client_update(
            c_i, c, x, y, steps * run.settings.local_epochs, run.settings.learning_rate
        )
        with np.load(state) as f:
            stored = [f[f"arr_{i}"] for i in range(len(names))]
        for e, s, d, n in zip(expected, stored, delta, names, strict=True):
            np.testing.assert_allclose(s, e, rtol=0, atol=1e-6)
            np.testing.assert_allclose(
                arrays[keys.CONTROL_DELTA_PREFIX + n].numpy(), d, rtol=0, atol=1e-6
            )
        c_i = stored  # what the next round starts from


def test_a_new_run_in_the_same_directory_forgets_client_state(
    small_config: Callable[..., SimulationConfig], tmp_path: Path
) -> None:
    config = small_config("strategy=scaffold")
    with prepare_run(config, tmp_path / "run") as first:
        stale = Path(first.settings.state_dir) / "client_0.npz"
        stale.parent.mkdir(parents=True)
        stale.write_bytes(b"c_i of an earlier run")

    with pytest.raises(ConfigError, match="already holds files"):
        prepare_run(config, tmp_path / "run")
    assert stale.exists()
    again = prepare_run(config, tmp_path / "run", overwrite=True)
    again.close()

    assert again.settings.state_dir == first.settings.state_dir
    assert not stale.exists()
