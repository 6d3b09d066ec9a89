"""SCAFFOLD: stochastic controlled averaging (Karimireddy et al., ICML 2020).

Flower ships no SCAFFOLD strategy; this one subclasses Flower's ``FedAvg`` and
overrides only what differs. Server state: the global weights ``x`` and the
global control variate ``c``. A round:

1. ``configure_train`` sends ``x`` (ArrayRecord ``arrays``) and ``c``
   (ArrayRecord ``control``) to the sampled clients.
2. Each client trains with the corrected gradient ``g - c_i + c`` (inside its
   `.tflite`), then sets its control variate by the paper's **option II**,
   ``c_i+ = c_i - c + (x - y_i) / (K lr)`` for ``K`` local steps, keeps ``c_i+``
   in its own storage and replies with its weights ``y_i`` and
   ``dc_i = c_i+ - c_i`` in one ArrayRecord (keys ``a*`` and ``dc.a*``).
3. The server sets ``x <- x + lr_g * sum_i w_i (y_i - x)`` with FedAvg's
   example weights ``w_i`` (``lr_g = 1`` gives FedAvg's mean, as NIID-Bench and
   Flower's ``baselines/niid_bench`` aggregate), and
   ``c <- c + (1/N) sum_{i in S} dc_i`` with ``N`` the number of clients
   (Algorithm 1, line 17).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.serverapp.strategy.strategy_utils import validate_message_reply_consistency

from fedtflite.algorithms.control_variates import scaffold_server_update
from fedtflite.protocol import keys

__all__ = ["Scaffold"]

CONTROL, DELTA_PREFIX = keys.CONTROL, keys.CONTROL_DELTA_PREFIX


def _as_float(value: object) -> float:
    if not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


class Scaffold(FedAvg):
    """SCAFFOLD on Flower's FedAvg (see the module docstring).

    Parameters
    ----------
    num_clients : int
        ``N`` of the control-variate update.
    server_learning_rate : float, default 1.0
        Global step size ``lr_g``.
    **kwargs
        Passed to :class:`flwr.serverapp.strategy.FedAvg`.
    """

    def __init__(
        self, *, num_clients: int, server_learning_rate: float = 1.0, **kwargs: object
    ):
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.scaffold_num_clients = num_clients
        self.server_learning_rate = server_learning_rate
        self.current_arrays: ArrayRecord | None = None
        self.control: ArrayRecord | None = None

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """FedAvg's messages, each also carrying the global control variate."""
        self.current_arrays = arrays
        if self.control is None:
            self.control = ArrayRecord(
                array_dict={
                    k: Array(np.zeros_like(v.numpy())) for k, v in arrays.items()
                }
            )
        messages = list(super().configure_train(server_round, arrays, config, grid))
        for m in messages:
            m.content[CONTROL] = self.control
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Update ``x`` and ``c`` from the successful replies (failures are skipped)."""
        ok = [m.content for m in replies if not m.has_error()]
        if not ok or self.current_arrays is None or self.control is None:
            return None, None
        validate_message_reply_consistency(
            ok, self.weighted_by_key, check_arrayrecord=True
        )
        names = list(self.current_arrays.keys())
        got = [next(iter(r.array_records.values())) for r in ok]
        missing = [DELTA_PREFIX + n for n in names if DELTA_PREFIX + n not in got[0]]
        if missing:
            raise ValueError(
                f"SCAFFOLD replies lack {missing[:3]}...: the clients' model has no "
                "SCAFFOLD support (build it with scaffold = true)"
            )
        ys = [[a[n].numpy() for n in names] for a in got]
        dcs = [[a[DELTA_PREFIX + n].numpy() for n in names] for a in got]
        weights = [
            _as_float(next(iter(r.metric_records.values()))[self.weighted_by_key])
            for r in ok
        ]
        x = [self.current_arrays[n].numpy() for n in names]
        c = [self.control[n].numpy() for n in names]
        x_new, c_new = scaffold_server_update(
            x, c, ys, dcs, weights, self.scaffold_num_clients, self.server_learning_rate
        )
        self.control = ArrayRecord(
            array_dict={n: Array(v) for n, v in zip(names, c_new, strict=True)}
        )
        metrics = self.train_metrics_aggr_fn(ok, self.weighted_by_key)
        return (
            ArrayRecord(
                array_dict={n: Array(v) for n, v in zip(names, x_new, strict=True)}
            ),
            metrics,
        )
