"""The Flower ClientApp: every simulated client runs the `.tflite` through LiteRT.

Train message: ``restore`` the global arrays, train ``local-epochs`` over the
client's shard, reply with ``parameters`` as one ArrayRecord and one MetricRecord
(``num-examples``, ``train-loss``, ``compute-seconds``). Evaluate message:
``restore``, ``infer`` on the client's local test split, reply with
``eval-loss``, ``eval-accuracy``, ``num-examples``.

Which simulated client a message is for comes from the message
(:data:`~fedtflite.simulation.records.CLIENT_ID`, chosen by the server's seeded
sampler), so the result never depends on which Flower node or Ray worker ran it.
A client whose training ends in a non-finite loss or weights raises, so Flower
sends an error reply and counts a failure: NaNs never reach the aggregate.
"""

from __future__ import annotations

import time

from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from clients.worker import Worker, get_worker
from fedtflite.simulation import records
from fedtflite.simulation.settings import ClientSettings

__all__ = ["app"]

app = ClientApp()


def _restore(msg: Message) -> tuple[Worker, int, int]:
    config = msg.content.config_records[records.CONFIG]
    worker = get_worker(ClientSettings.from_config(config))
    arrays = msg.content.array_records[records.ARRAYS]
    worker.model.restore([arrays[name].numpy() for name in arrays])
    cid, server_round = config[records.CLIENT_ID], config["server-round"]
    assert isinstance(cid, int) and isinstance(server_round, int)
    return worker, cid, server_round


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Local training of one simulated client."""
    start = time.perf_counter()
    worker, cid, server_round = _restore(msg)
    model, s = worker.model, worker.settings
    data = worker.client_data(cid)
    if s.learning_rate and model.supports_learning_rate:
        model.set_learning_rate(s.learning_rate)
    config = msg.content.config_records[records.CONFIG]
    if records.PROXIMAL_MU in config:  # Flower's FedProx: the term runs on the device
        mu = config[records.PROXIMAL_MU]
        assert isinstance(mu, float | int)
        model.set_proximal_mu(float(mu))
    fit = model.fit(
        data.train_images,
        data.train_labels,
        epochs=s.local_epochs,
        batch_size=s.batch_size,
        rng=worker.rng(cid, server_round),
    )
    weights = model.parameters(check_finite=True)
    seconds = time.perf_counter() - start
    names = [p.name for p in model.contract.parameters]
    arrays = ArrayRecord(
        array_dict={n: Array(w) for n, w in zip(names, weights, strict=True)}
    )
    metrics = MetricRecord(
        {
            records.NUM_EXAMPLES: fit.num_examples,
            records.TRAIN_LOSS: fit.loss,
            records.COMPUTE_SECONDS: seconds,
        }
    )
    content = RecordDict({records.ARRAYS: arrays, records.METRICS: metrics})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Federated evaluation of the global weights on one client's local test split."""
    start = time.perf_counter()
    worker, cid, _ = _restore(msg)
    data = worker.client_data(cid)
    result = worker.model.evaluate(data.test_images, data.test_labels)
    empty = result.num_examples == 0  # weight 0: must not put NaN into the mean
    metrics = MetricRecord(
        {
            records.NUM_EXAMPLES: result.num_examples,
            records.EVAL_LOSS: 0.0 if empty else result.loss,
            records.EVAL_ACCURACY: 0.0 if empty else result.accuracy,
            records.COMPUTE_SECONDS: time.perf_counter() - start,
        }
    )
    return Message(content=RecordDict({records.METRICS: metrics}), reply_to=msg)
