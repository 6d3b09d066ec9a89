"""``train_tail``: a dynamic-batch model's partial batches in a subgraph of their own.

A client of ``n`` examples trains ``n // batch`` full batches and one partial
batch. Through one ``train`` subgraph, LiteRT re-allocates it for the partial
batch and again for the next client's full ones; with ``train_tail`` (the same
step, the same variables, its own subgraph) neither is re-allocated. It must
train exactly as ``train`` alone: bit-equal weights and losses, checked against
the same file with the signature renamed away (what a model built elsewhere
looks like). Real `.tflite`, real LiteRT, real Fashion-MNIST.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fedtflite.data import FashionMnist
from fedtflite.errors import SignatureMismatchError
from fedtflite.runtime import ClientModel
from fedtflite.runtime.contract import TRAIN_TAIL

SIZES = (60, 33, 45, 20, 64, 60, 1)  # partial batches of 28, 1, 13, all 20, none...


def _rename(model: bytes, old: str, new: str) -> bytes:
    """``model`` with every flatbuffer string ``old`` (a signature key) renamed
    ``new`` (not longer): the length prefix rewritten, the rest left as it was."""
    data, o, n = bytearray(model), old.encode(), new.encode()
    assert len(n) <= len(o)
    at, found = data.find(o), 0
    while at >= 0:
        if int.from_bytes(data[at - 4 : at], "little") == len(o):  # a whole string
            data[at - 4 : at] = len(n).to_bytes(4, "little")
            data[at : at + len(n)] = n
            data[at + len(n)] = 0  # flatbuffer strings end in a NUL
            found += 1
        at = data.find(o, at + 1)
    assert found, f"no string {old!r} in the model"
    return bytes(data)


def _without_tail(model: bytes) -> bytes:
    """The same file, its ``train_tail`` signature renamed to one nobody reads."""
    return _rename(model, TRAIN_TAIL, "other_tail")


def _clients(data: FashionMnist) -> list[tuple[np.ndarray, np.ndarray]]:
    out, start = [], 0
    for n in SIZES:
        out.append(
            (data.train.images[start : start + n], data.train.labels[start : start + n])
        )
        start += n
    return out


def _train(model: ClientModel, clients: list[Any], **kw: Any) -> list[Any]:
    """Each client from the same initial weights; its loss and weights."""
    start = model.parameters()
    results = []
    for i, (x, y) in enumerate(clients):
        model.restore(start)
        fit = model.fit(
            x, y, epochs=2, batch_size=32, rng=np.random.default_rng([7, i]), **kw
        )
        results.append((fit.loss, fit.num_steps, model.parameters()))
    return results


def test_dynamic_built_models_have_a_tail_fixed_ones_not(
    mlp_bytes: bytes, cnn_bytes: bytes
) -> None:
    assert TRAIN_TAIL in ClientModel(mlp_bytes).contract.extra_signatures
    assert TRAIN_TAIL not in ClientModel(cnn_bytes).contract.extra_signatures
    assert (
        TRAIN_TAIL
        not in ClientModel(_without_tail(mlp_bytes)).contract.extra_signatures
    )


def test_the_tail_trains_exactly_as_train(mlp_bytes: bytes, data: FashionMnist) -> None:
    clients = _clients(data)
    with_tail = _train(ClientModel(mlp_bytes), clients)
    plain = _train(ClientModel(_without_tail(mlp_bytes)), clients)
    for (loss_a, steps_a, w_a), (loss_b, steps_b, w_b) in zip(
        with_tail, plain, strict=True
    ):
        assert loss_a == loss_b and steps_a == steps_b
        assert all(np.array_equal(a, b) for a, b in zip(w_a, w_b, strict=True))
    # the clients trained (else equality says nothing)
    assert not np.array_equal(with_tail[0][2][0], with_tail[1][2][0])


def test_the_tail_trains_exactly_as_train_under_a_step_budget(
    mlp_bytes: bytes, data: FashionMnist
) -> None:
    clients = _clients(data)[:3]
    a = _train(ClientModel(mlp_bytes), clients, max_steps=3)
    b = _train(ClientModel(_without_tail(mlp_bytes)), clients, max_steps=3)
    assert [r[:2] for r in a] == [r[:2] for r in b]
    assert all(
        np.array_equal(x, y)
        for ra, rb in zip(a, b, strict=True)
        for x, y in zip(ra[2], rb[2], strict=True)
    )


def test_partial_batches_no_longer_reallocate_train(
    mlp_bytes: bytes, data: FashionMnist
) -> None:
    x, y = data.train.images[:600], data.train.labels[:600]
    clients = [(x[i : i + 60], y[i : i + 60]) for i in range(0, 600, 60)]
    model = ClientModel(mlp_bytes)
    _train(model, clients)
    # one allocation each for 10 clients of 32 + 28 rows, 2 epochs
    assert model._train.allocations == 1
    assert model._train_tail is not None and model._train_tail.allocations == 1
    plain = ClientModel(_without_tail(mlp_bytes))
    _train(plain, clients)
    assert plain._train_tail is None
    # 32 first, then to 28 and back in each of 20 epochs, bar the last way back
    assert plain._train.allocations == 1 + 2 * 20 - 1


def test_a_tail_unlike_train_is_refused(mlp_bytes: bytes) -> None:
    # the file's train_tail renamed away, its name given to a signature with
    # other inputs and outputs (set_learning_rate(lr) -> {lr})
    model = _rename(_without_tail(mlp_bytes), "set_learning_rate", TRAIN_TAIL)
    with pytest.raises(SignatureMismatchError) as e:
        ClientModel(model)
    message = str(e.value)
    assert "train_tail takes" in message and "lr" in message and "\n" not in message
