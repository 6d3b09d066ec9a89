"""The physical floor of a round: LiteRT ``Invoke`` and nothing else.

Independent of ``fedtflite`` on purpose (it imports only numpy and LiteRT), so it
checks the framework from outside. Per simulated client: ``restore`` (its weights
written into the input tensors, one ``Invoke``), ``epochs * ceil(n / batch)``
full-batch ``train`` steps whose inputs were prepared once and whose tensors were
allocated once, and ``parameters`` (one ``Invoke``, the weights copied out). No
shuffling, no batching, no label encoding, no resize, no learning-rate knob, no
messages, no aggregation: what a client cannot do without. One interpreter, one
thread, one process; a round's floor on ``w`` workers is this time divided by
``w`` (perfect parallelism, no driver).

Usage::

    python -m benchmarks.floor MODEL.tflite --clients 1000 --examples 60 \
        [--epochs 1] [--batch-size 32] [--workers 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["lean_clients", "physical_floor"]


class _Signature:
    """One signature's subgraph on the interpreter's wrapper (LiteRT's own calls)."""

    def __init__(self, interpreter: Any, key: str):
        runner = interpreter.get_signature_runner(key)
        self.details = runner.get_input_details()
        self.wrapper = interpreter._interpreter  # what SignatureRunner calls
        self.sub = runner._subgraph_index
        self.inputs: dict[str, int] = dict(runner._inputs)
        self.outputs: dict[str, int] = dict(runner._outputs)

    def allocate(self, feed: dict[str, np.ndarray]) -> None:
        for name, value in feed.items():
            shape = np.array(value.shape, np.int32)
            self.wrapper.ResizeInputTensor(self.inputs[name], shape, False, self.sub)
        self.wrapper.AllocateTensors(self.sub)


def _train_feed(details: dict[str, Any], batch: int, seed: int) -> dict[str, Any]:
    """Real-looking inputs for one ``train`` step of ``batch`` rows."""
    rng = np.random.default_rng(seed)
    feed = {}
    for name, d in details.items():
        shape = [batch if s < 0 else int(s) for s in d["shape_signature"]]
        if name == "y" and d["dtype"] == np.float32:  # one-hot labels
            feed[name] = np.eye(shape[1], dtype=np.float32)[
                rng.integers(0, shape[1], shape[0])
            ]
        elif name == "y":  # class ids
            feed[name] = rng.integers(0, 10, shape).astype(d["dtype"])
        elif name == "mask":
            feed[name] = np.ones(shape, np.float32)
        else:  # images, dropout noise: uniform in [0, 1)
            feed[name] = rng.random(shape, np.float32)
    return feed


def physical_floor(
    model: bytes,
    examples: Sequence[int],
    *,
    epochs: int,
    batch_size: int,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Seconds of ``len(examples)`` clients' restore, train steps and parameters.

    Parameters
    ----------
    model : bytes
        The client ``.tflite``.
    examples : sequence of int
        Each client's number of training examples (it sets its step count,
        ``epochs * ceil(n / batch_size)``).
    epochs, batch_size : int
        Local training.
    clock : callable, default time.perf_counter
        What is timed: wall time, or ``time.process_time`` (this process's CPU
        time, steadier than wall time on a loaded machine).

    Returns
    -------
    float
        Seconds, one interpreter, one thread, tensors allocated beforehand.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model, num_threads=1)
    train = _Signature(interpreter, "train")
    restore = _Signature(interpreter, "restore")
    params = _Signature(interpreter, "parameters")
    fixed = train.details["x"]["shape_signature"][0]
    batch = batch_size if fixed < 0 else int(fixed)
    feed = _train_feed(train.details, batch, seed=0)
    train.allocate(feed)
    params.allocate({})
    params.wrapper.Invoke(params.sub)
    weights = {  # restore's inputs are named like parameters' outputs: a0, a1, ...
        name: params.wrapper.GetTensor(params.outputs[name], params.sub)
        for name in restore.inputs
    }
    restore.allocate(weights)
    w, ts, rs, ps = train.wrapper, train.sub, restore.sub, params.sub
    train_in = [(train.inputs[n], v) for n, v in feed.items()]
    restore_in = [(restore.inputs[n], v) for n, v in weights.items()]
    steps = [epochs * math.ceil(n / batch) for n in examples]
    start = clock()
    for k in steps:
        for index, value in restore_in:
            w.SetTensor(index, value, rs)
        w.Invoke(rs)
        for _ in range(k):
            for index, value in train_in:
                w.SetTensor(index, value, ts)
            w.Invoke(ts)
        w.Invoke(ps)
        for index in params.outputs.values():
            w.GetTensor(index, ps)
    return clock() - start


def lean_clients(
    model: bytes,
    clients: Sequence[tuple[np.ndarray, np.ndarray, int]],
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    server_round: int,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Seconds of everything a client must do, written as tightly as Python allows.

    What :func:`physical_floor` leaves out but a real client cannot: its uint8
    images converted (``/ 255``) and labels one-hot encoded once, its shuffle
    stream ``default_rng([seed, round, id])``, a gather per step, the partial
    last batch (a dynamic-batch model is resized and re-allocated for it and
    back), the learning rate set, a finite check of the weights and their
    example-weighted sum (a cohort's pre-aggregation). No validation, no
    records, no messages. ``clients`` holds ``(uint8 images, labels, id)``; a
    model with a ``mask`` pads the partial batch; ``noise`` inputs are not
    supported.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model, num_threads=1)
    train = _Signature(interpreter, "train")
    restore = _Signature(interpreter, "restore")
    params = _Signature(interpreter, "parameters")
    lr = _Signature(interpreter, "set_learning_rate")
    fixed = int(train.details["x"]["shape_signature"][0])
    one_hot = train.details["y"]["dtype"] == np.float32
    has_mask = "mask" in train.inputs
    x_shape = tuple(int(d) for d in train.details["x"]["shape_signature"][1:])
    params.allocate({})
    params.wrapper.Invoke(params.sub)
    weights = {
        name: params.wrapper.GetTensor(params.outputs[name], params.sub)
        for name in restore.inputs
    }
    restore.allocate(weights)
    rate = np.asarray(learning_rate, np.float32)
    lr.allocate({"lr": rate})
    eye = np.eye(10, dtype=np.float32)
    w, ts = train.wrapper, train.sub
    x_in, y_in = train.inputs["x"], train.inputs["y"]
    shape = 0
    total: list[np.ndarray] = [np.zeros_like(a) for a in weights.values()]
    scaled = [np.empty_like(a) for a in total]
    start = clock()
    for images, labels, cid in clients:
        n = len(labels)
        x_all = np.divide(images, np.float32(255)).reshape((n, *x_shape))
        y_all = eye[labels] if one_hot else labels.astype(np.int32)
        rng = np.random.default_rng([seed, server_round, cid])
        for name, value in weights.items():
            w.SetTensor(restore.inputs[name], value, restore.sub)
        w.Invoke(restore.sub)
        w.SetTensor(lr.inputs["lr"], rate, lr.sub)
        w.Invoke(lr.sub)
        for _ in range(epochs):
            order = rng.permutation(n)
            for s in range(0, n, batch_size):
                idx = order[s : s + batch_size]
                rows = len(idx) if fixed < 0 else fixed
                x, y = x_all[idx], y_all[idx]
                if rows != len(idx):  # fixed batch: pad, mask
                    x = np.concatenate(
                        [x, np.zeros((rows - len(idx), *x_shape), x.dtype)]
                    )
                    y = np.concatenate(
                        [y, np.zeros((rows - len(idx), *y.shape[1:]), y.dtype)]
                    )
                if rows != shape:
                    feed = {"x": x, "y": y}
                    if has_mask:
                        feed["mask"] = np.zeros(rows, np.float32)
                    train.allocate(feed)
                    shape = rows
                w.SetTensor(x_in, x, ts)
                w.SetTensor(y_in, y, ts)
                if has_mask:
                    mask = np.zeros(rows, np.float32)
                    mask[: len(idx)] = 1
                    w.SetTensor(train.inputs["mask"], mask, ts)
                w.Invoke(ts)
        w.Invoke(params.sub)
        for acc, tmp, index in zip(total, scaled, params.outputs.values(), strict=True):
            a = w.GetTensor(index, params.sub)
            if not np.isfinite(a.sum()):
                raise ArithmeticError(f"client {cid}: non-finite weights")
            np.multiply(a, np.float32(n), out=tmp)
            np.add(acc, tmp, out=acc)
    return clock() - start


def main() -> None:
    """Print the floor of a round of identical clients."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--examples", type=int, default=60, help="per client")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3, help="report the fastest")
    args = p.parse_args()
    data = args.model.read_bytes()
    best = min(
        physical_floor(
            data,
            [args.examples] * args.clients,
            epochs=args.epochs,
            batch_size=args.batch_size,
        )
        for _ in range(args.repeat)
    )
    print(
        f"{args.clients} clients x {args.examples} examples: {best:.4f} s in one "
        f"process, floor on {args.workers} workers {best / args.workers:.4f} s"
    )


if __name__ == "__main__":
    main()
