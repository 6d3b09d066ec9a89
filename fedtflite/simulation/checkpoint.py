"""A run's per-round checkpoint: what the server needs to go on after a crash.

After every round the server writes ``checkpoint.npz`` in the run directory: the
round, the config it ran with, the global weights, and the strategy's own state
(FedAvgM's momentum, FedAdam's moments, SCAFFOLD's control variate, ...). A run
resumed from it continues with the next round and, because client sampling and
shuffling are seeded by ``(seed, round, client)``, produces the same history and
weights as a run that was never interrupted. Clients' stored state (SCAFFOLD's
``c_i``) lives in their own files (:mod:`clients.worker`), versioned by round.

The file is written atomically (a temporary file, then a rename): a run killed
while writing it keeps the previous round's checkpoint.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedtflite.algorithms.client_state import ClientStateStore
from fedtflite.errors import CheckpointError
from fedtflite.files import atomic_path
from fedtflite.simulation.config import SimulationConfig, upgrade_run_config
from fedtflite.simulation.history import RoundRecord, read_history
from fedtflite.simulation.strategy_registry import STRATEGIES

__all__ = [
    "CHECKPOINT_FILE",
    "EXECUTION_KEYS",
    "MEASURED_KEY",
    "Checkpoint",
    "check_resumable",
    "load_checkpoint",
    "resume_point",
    "save_checkpoint",
]

CHECKPOINT_FILE = "checkpoint.npz"
"""The checkpoint's name inside a run directory."""

EXECUTION_KEYS = frozenset(
    {
        "num-rounds",
        "ray-address",
        "client-cpus",
        "clients-per-message",
        "data-dir",
        "allow-failed-rounds",
    }
)
"""Config keys a resumed run may change: where and how long it runs, and whether
failed rounds fail it, not what it computes (``clients-per-message`` and
``client-cpus`` regroup clients into messages, which changes only the order of
the float32 sums of pre-aggregation)."""

MEASURED_KEY = "step-seconds"
"""A key whose 0 means "measure": a resumed run with 0 takes the checkpoint's."""

_WEIGHTS, _STATE, _DEVICES, _META = "w/", "s/", "d/", "meta"


@dataclass(frozen=True)
class Checkpoint:
    """The server's state after round ``round``.

    Attributes
    ----------
    round : int
        The last finished round (0 = the initial weights).
    config : dict
        The run's config as ``{kebab-key: value}``.
    weights : dict of str to np.ndarray
        The global weights by parameter name, in export order.
    strategy_state : dict of str to dict of str to np.ndarray
        The strategy's state attributes (``attribute -> {key: array}``).
    devices : dict of str to np.ndarray
        The virtual clock and participation counts
        (:meth:`fedtflite.devices.VirtualRun.state`); empty before round 1.
    """

    round: int
    config: dict[str, Any]
    weights: dict[str, np.ndarray]
    strategy_state: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    devices: dict[str, np.ndarray] = field(default_factory=dict)


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to ``path`` atomically (temporary file, then rename)."""
    arrays: dict[str, np.ndarray] = {
        _WEIGHTS + name: w for name, w in checkpoint.weights.items()
    }
    for attr, values in checkpoint.strategy_state.items():
        for key, a in values.items():
            arrays[f"{_STATE}{attr}/{key}"] = a
    for key, a in checkpoint.devices.items():
        arrays[_DEVICES + key] = a
    meta = {
        "round": checkpoint.round,
        "config": checkpoint.config,
        "weights": list(checkpoint.weights),
        "state": {attr: list(v) for attr, v in checkpoint.strategy_state.items()},
        "devices": list(checkpoint.devices),
    }
    arrays[_META] = np.array(json.dumps(meta))
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)  # type: ignore[arg-type]


def load_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint at ``path``, or None when there is none.

    Raises
    ------
    CheckpointError
        The file exists but is not a readable checkpoint.
    """
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f[_META]))
            weights = {n: f[_WEIGHTS + n] for n in meta["weights"]}
            state = {
                attr: {k: f[f"{_STATE}{attr}/{k}"] for k in keys}
                for attr, keys in meta["state"].items()
            }
            devices = {k: f[_DEVICES + k] for k in meta.get("devices", [])}
            config = upgrade_run_config(meta["config"])  # written by older versions too
            return Checkpoint(int(meta["round"]), config, weights, state, devices)
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as e:
        raise CheckpointError(
            f"{path}: not a readable fedtflite checkpoint ({type(e).__name__}: {e}); "
            "delete it to start the run from round 0"
        ) from None


def check_resumable(
    checkpoint: Checkpoint, config: Mapping[str, Any], history_rounds: int, path: Path
) -> None:
    """Raise unless ``config`` may go on from ``checkpoint``.

    Parameters
    ----------
    checkpoint : Checkpoint
    config : mapping
        The resuming run's config as ``{kebab-key: value}``.
    history_rounds : int
        Rows in the run's ``history.csv`` (rounds 0..n-1).
    path : Path
        The checkpoint file (named in the errors).

    Raises
    ------
    CheckpointError
        A key other than :data:`EXECUTION_KEYS` differs (``step-seconds``
        = 0 matches any: it takes the checkpoint's), the run already has
        ``num-rounds`` rounds, or the history ends before the checkpoint.
    """
    # A key added since the checkpoint was written ran at its default (a new
    # key's default is the behaviour from before it existed).
    defaults = SimulationConfig().to_mapping()
    there = {**defaults, **checkpoint.config}
    now = {**defaults, **config}
    changed = sorted(
        k
        for k in set(now) | set(there)
        if k not in EXECUTION_KEYS
        and now.get(k) != there.get(k)
        and not (k == MEASURED_KEY and not config.get(k))
    )
    if changed:
        diffs = ", ".join(
            f"{k} = {there.get(k)!r} there, {now.get(k)!r} now" for k in changed[:3]
        )
        raise CheckpointError(
            f"{path} was written by another config ({diffs}); resume with the same "
            f"config (only {', '.join(sorted(EXECUTION_KEYS))} may change) or use "
            "another run directory"
        )
    num_rounds = int(config["num-rounds"])
    if checkpoint.round >= num_rounds:
        raise CheckpointError(
            f"{path} is at round {checkpoint.round}: nothing to resume for "
            f"num-rounds = {num_rounds} (raise num-rounds to go on)"
        )
    if history_rounds <= checkpoint.round:
        raise CheckpointError(
            f"{path} is at round {checkpoint.round} but history.csv beside it ends at "
            f"round {history_rounds - 1}; delete the checkpoint to start from round 0"
        )


def _has_rounds(path: Path) -> bool:
    """Whether ``path`` records a round (a run stopped before round 0 left its
    header only: there is nothing to lose by starting over)."""
    if not path.is_file():
        return False
    try:
        return bool(read_history(path))
    except (OSError, ValueError, TypeError):
        return True  # unreadable: keep it, as a history with rounds


def resume_point(
    run_dir: Path, config: Mapping[str, Any]
) -> tuple[Checkpoint | None, tuple[RoundRecord, ...]]:
    """``run_dir``'s checkpoint and its history up to it, checked against ``config``.

    Parameters
    ----------
    run_dir : Path
        The run directory.
    config : mapping
        The resuming run's config as ``{kebab-key: value}``.

    Returns
    -------
    (Checkpoint or None, tuple of RoundRecord)
        ``(None, ())`` for a directory with neither checkpoint nor history (the
        run starts at round 0); else the checkpoint and the history rows up to
        and including its round.

    Raises
    ------
    CheckpointError
        The directory holds a history but no checkpoint (a finished run, which a
        resume would overwrite), an unreadable checkpoint or history, a checkpoint
        :func:`check_resumable` refuses, or a SCAFFOLD checkpoint past round 0
        without the clients' stored ``c_i``.
    """
    path = run_dir / CHECKPOINT_FILE
    checkpoint = load_checkpoint(path)
    if checkpoint is None:
        if _has_rounds(run_dir / "history.csv"):
            # Starting over would overwrite the rounds it has.
            raise CheckpointError(
                f"{run_dir} has a history.csv but no {CHECKPOINT_FILE}: the run "
                "finished (or predates checkpoints), so there is nothing to resume; "
                "run without resume to start it over, or use another directory"
            )
        return None, ()
    try:
        rows = read_history(run_dir / "history.csv")
    except (OSError, ValueError, TypeError) as e:
        raise CheckpointError(
            f"{run_dir / 'history.csv'}: unreadable beside {path} ({e}); delete the "
            "checkpoint to start from round 0"
        ) from None
    check_resumable(checkpoint, config, len(rows), path)
    state = ClientStateStore.of_run(run_dir)
    if (
        _keeps_client_state(config.get("strategy"))
        and checkpoint.round > 0
        and state.is_empty()
    ):
        raise CheckpointError(
            f"{path} is at round {checkpoint.round} of a SCAFFOLD run but "
            f"{state.directory} holds no client state (c_i); copy it back or start the "
            "run from round 0 (without resume)"
        )
    return checkpoint, tuple(rows[: checkpoint.round + 1])


def _keeps_client_state(strategy: object) -> bool:
    spec = STRATEGIES.get(strategy) if isinstance(strategy, str) else None
    return spec is not None and spec.client_state
