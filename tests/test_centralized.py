"""Centralized baseline: the mlp trained through LiteRT `train` learns Fashion-MNIST.

One client with all 60k images, 5 epochs of batch 32 at learning rate 0.05 (the
model ``fedtflite train`` uses). Measured with seed 0: test accuracy 83.3, 83.4,
85.7, 85.6, 86.6% after epochs 1-5. The run takes about 3 s on one core.
"""

from __future__ import annotations

import pytest

from fedtflite.centralized import train_centralized
from fedtflite.data import FashionMnist
from fedtflite.runtime import ClientModel

pytestmark = pytest.mark.integration


def test_mlp_reaches_86_percent_in_5_epochs(
    mlp_bytes: bytes, data: FashionMnist
) -> None:
    model = ClientModel(mlp_bytes)  # SGD at 0.05, the default
    results = train_centralized(
        model,
        data,
        epochs=5,
        batch_size=32,
        seed=0,
        learning_rate=0.05,
    )
    for r in results:
        print(
            f"epoch {r.epoch}: train loss {r.fit.loss:.4f}, test loss "
            f"{r.test.loss:.4f}, test accuracy {r.test.accuracy:.4f}"
        )
    assert [r.fit.num_steps for r in results] == [1875] * 5  # 60000 / 32
    assert all(r.test.num_examples == 10_000 for r in results)
    assert results[-1].fit.loss < results[0].fit.loss
    assert results[-1].test.accuracy >= 0.86
