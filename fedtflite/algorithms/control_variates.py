"""SCAFFOLD's control-variate arithmetic (Karimireddy et al., ICML 2020), pure.

The client keeps ``c_i``, the server ``x`` and ``c``. Option II of the paper's
Algorithm 1 (line 12) sets the client's new control variate from the weights it
ends with, no extra gradient pass needed:
``c_i+ = c_i - c + (x - y_i) / (K lr)`` for ``K`` local steps of size ``lr``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["scaffold_client_update", "scaffold_server_update"]


def scaffold_client_update(
    c_i: Sequence[np.ndarray],
    c: Sequence[np.ndarray],
    x: Sequence[np.ndarray],
    y: Sequence[np.ndarray],
    num_steps: int,
    learning_rate: float,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Option II: the client's new control variate and its change.

    Parameters
    ----------
    c_i, c : list of np.ndarray
        Client and global control variates before the round.
    x, y : list of np.ndarray
        Global weights received and local weights after ``num_steps`` steps.
    num_steps : int
        ``K``, local optimizer steps (>= 1).
    learning_rate : float
        Local step size.

    Returns
    -------
    (c_i_new, delta)
        ``c_i+`` and ``c_i+ - c_i``.
    """
    scale = 1.0 / (num_steps * learning_rate)
    new = [
        (ci - ck + (xk - yk) * scale).astype(ci.dtype)
        for ci, ck, xk, yk in zip(c_i, c, x, y, strict=True)
    ]
    return new, [n - ci for n, ci in zip(new, c_i, strict=True)]


def scaffold_server_update(
    x: Sequence[np.ndarray],
    c: Sequence[np.ndarray],
    ys: Sequence[Sequence[np.ndarray]],
    dcs: Sequence[Sequence[np.ndarray]],
    weights: Sequence[float],
    num_clients: int,
    server_learning_rate: float = 1.0,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One SCAFFOLD server step (pure).

    Parameters
    ----------
    x, c : list of np.ndarray
        Global weights and control variate.
    ys, dcs : list of list of np.ndarray
        Per sampled client: its weights ``y_i`` and control delta ``dc_i``.
    weights : list of float
        Per client aggregation weight (e.g. examples); normalised here.
    num_clients : int
        ``N``, all clients of the federation.
    server_learning_rate : float
        ``lr_g``.

    Returns
    -------
    (x_new, c_new)
    """
    w = np.asarray(weights, np.float64)
    w = w / w.sum()
    x_new = [
        (
            xk
            + server_learning_rate
            * sum(wi * (y[k] - xk) for wi, y in zip(w, ys, strict=True))
        ).astype(xk.dtype)
        for k, xk in enumerate(x)
    ]
    c_new = [
        (ck + sum(dc[k] for dc in dcs) / num_clients).astype(ck.dtype)
        for k, ck in enumerate(c)
    ]
    return x_new, c_new
