"""Per-process state of a Flower worker, and what one simulated client does.

A :class:`Worker` (one interpreter, the training images, the partition) is built
on the first message a process handles and reused by every later one (keyed by
the run's settings, which include the model's digest), never rebuilt per
message. :meth:`Worker.train` (:meth:`Worker.prepare`, then :meth:`Worker.run_prepared`)
and :meth:`Worker.evaluate` run one simulated client on it; ``restore`` first,
so nothing of the previous client survives.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedtflite.algorithms.client_state import ClientStateStore
from fedtflite.algorithms.control_variates import scaffold_client_update
from fedtflite.data import (
    load_train_uint8,
    partition_indices,
    split_local_test,
    to_float,
)
from fedtflite.data.partition_file import load_partition
from fedtflite.errors import ConfigError, ModelFileError, PartitionError
from fedtflite.personalization import PersonalResult, personalize_client
from fedtflite.protocol.settings import ClientSettings
from fedtflite.runtime import ClientModel, EvalResult, TrainPlan

__all__ = ["ClientData", "ClientUpdate", "PreparedClient", "Worker", "get_worker"]


@dataclass(frozen=True)
class ClientData:
    """One simulated client's local data (copies gathered from the shared arrays)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


@dataclass(frozen=True)
class ClientUpdate:
    """What one client's local training produced.

    Attributes
    ----------
    weights : list of np.ndarray
        ``parameters`` after training, in the model's order.
    control_delta : list of np.ndarray or None
        SCAFFOLD's ``c_i+ - c_i``; None without SCAFFOLD.
    num_examples : int
        Local training examples.
    loss : float
        Mean training loss.
    seconds : float
        On-device seconds: restore, knobs, train steps, parameters.
    """

    weights: list[np.ndarray]
    control_delta: list[np.ndarray] | None
    num_examples: int
    loss: float
    seconds: float


@dataclass(frozen=True)
class PreparedClient:
    """A client's local training planned ahead (:meth:`Worker.prepare`)."""

    client_id: int
    server_round: int
    plan: TrainPlan


class Worker:
    """The model and data every simulated client of this process shares."""

    def __init__(self, settings: ClientSettings):
        path = Path(settings.model_path)
        try:
            data = path.read_bytes()
        except OSError:
            raise ModelFileError(
                f"{path}: model file not readable on this node; every Ray node needs "
                "the run directory at the same path (shared filesystem)"
            ) from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != settings.model_sha256:
            raise ModelFileError(
                f"{path}: sha256 {digest[:12]} differs from the server's "
                f"{settings.model_sha256[:12]}; the file changed during the run"
            )
        self.model = ClientModel(data)
        self.settings = settings
        self._state = ClientStateStore(Path(settings.state_dir))
        # uint8, as stored: a quarter of the float32 copy; a client's images are
        # converted when it runs (~20 us for 60 images).
        self._images, self._labels = load_train_uint8(settings.data_dir or None)
        spec = settings.partition
        try:
            self._parts = load_partition(Path(settings.partition_path), spec)
        except (OSError, ConfigError):
            self._parts = partition_indices(self._labels, spec)
        # At most every training example's index once: bounded by the data set,
        # not by the number of clients.
        self._splits: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _split(self, client_id: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= client_id < len(self._parts):
            raise ConfigError(
                f"client-id {client_id} out of range 0..{len(self._parts) - 1}"
            )
        split = self._splits.get(client_id)
        if split is None:  # a client's split never changes: computed once
            s = self.settings
            split = split_local_test(
                self._parts[client_id],
                s.client_test_fraction,
                s.partition.seed,
                client_id=client_id,
            )
            self._splits[client_id] = split
        return split

    def client_data(self, client_id: int) -> ClientData:
        """The local train/test split of ``client_id``."""
        train, test = self._split(client_id)
        return ClientData(
            to_float(self._images[train]),
            self._labels[train],
            to_float(self._images[test]),
            self._labels[test],
        )

    def rng(self, client_id: int, server_round: int) -> np.random.Generator:
        """A client's shuffling stream in a round, from ``(seed, round, client)``."""
        # what default_rng builds, minus its wrapper (~15 us a client)
        seed = [self.settings.partition.seed, server_round, client_id]
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))

    def prepare(
        self, client_id: int, server_round: int, *, max_steps: int | None = None
    ) -> PreparedClient:
        """One client's local training planned: its data gathered, shuffled and
        batched, every draw of its stream made (:meth:`ClientModel.plan_fit`).

        Parameters
        ----------
        client_id, server_round : int
            Which client, which round (they seed the shuffling).
        max_steps : int, optional
            Most ``train`` steps (a device that runs out of time before the
            round's deadline); None: the full ``local_epochs``.

        Raises
        ------
        FedTfliteError
            A client without training data, data that do not fit the model.
        """
        s = self.settings
        train, _ = self._split(client_id)
        images, labels = self._images[train], self._labels[train]  # as stored
        if not len(labels):
            raise PartitionError(
                f"client {client_id} holds no training example; it cannot train"
            )
        plan = self.model.plan_fit(
            images,
            labels,
            epochs=s.local_epochs,
            batch_size=s.batch_size,
            rng=self.rng(client_id, server_round),
            max_steps=max_steps,
            convert=to_float,  # only the rows gathered, once
        )
        return PreparedClient(client_id, server_round, plan)

    def train(
        self,
        client_id: int,
        server_round: int,
        global_weights: Sequence[np.ndarray],
        *,
        proximal_mu: float | None = None,
        control: Sequence[np.ndarray] | None = None,
        max_steps: int | None = None,
    ) -> ClientUpdate:
        """Local training of one client from the global weights
        (:meth:`prepare`, then :meth:`run_prepared`).

        Parameters
        ----------
        client_id, server_round : int
            Which client, which round (they seed the shuffling).
        global_weights : sequence of np.ndarray
            What ``restore`` loads (staged: :meth:`ClientModel.stage`).
        proximal_mu : float, optional
            FedProx's ``mu`` for the model's proximal term.
        control : sequence of np.ndarray, optional
            SCAFFOLD's global control variate ``c``; the client's own ``c_i``
            comes from (and goes back to) its file under ``state_dir``.
        max_steps : int, optional
            Most ``train`` steps; None: the full ``local_epochs``.

        Raises
        ------
        FedTfliteError
            Bad data or model, a non-finite loss or weights.
        """
        prepared = self.prepare(client_id, server_round, max_steps=max_steps)
        return self.run_prepared(
            prepared, global_weights, proximal_mu=proximal_mu, control=control
        )

    def run_prepared(
        self,
        client: PreparedClient,
        global_weights: Sequence[np.ndarray],
        *,
        proximal_mu: float | None = None,
        control: Sequence[np.ndarray] | None = None,
        copy_weights: bool = True,
    ) -> ClientUpdate:
        """Run a client from :meth:`prepare`: ``restore``, its ``train`` steps,
        ``parameters`` (arguments as :meth:`train`'s). ``copy_weights=False``:
        the update's weights are views of the interpreter's outputs, valid only
        until this worker runs its next client (for a caller that adds them to
        a reply at once).

        Raises
        ------
        FedTfliteError
            A non-finite loss or weights.
        """
        model, s = self.model, self.settings
        client_id, server_round = client.client_id, client.server_round
        start = time.perf_counter()
        model.restore(global_weights)
        if s.learning_rate is not None:
            model.set_learning_rate(s.learning_rate)
        if proximal_mu is not None:
            model.set_proximal_mu(proximal_mu)
        c_i = None
        if control is not None:
            c_i = self._state.load(client_id, control, server_round)
            model.set_correction([c - ci for c, ci in zip(control, c_i, strict=True)])
        fit = model.run_plan(client.plan)
        weights = model.parameters(check_finite=True, copy=copy_weights)
        seconds = time.perf_counter() - start + client.plan.seconds
        delta = None
        if control is not None and c_i is not None:
            if s.learning_rate is None:  # the server checks the model: never here
                raise ConfigError("SCAFFOLD needs the model's set_learning_rate")
            c_new, delta = scaffold_client_update(
                c_i, control, global_weights, weights, fit.num_steps, s.learning_rate
            )
            self._state.save(client_id, c_new, server_round)
        return ClientUpdate(weights, delta, fit.num_examples, fit.loss, seconds)

    def evaluate(
        self, client_id: int, global_weights: Sequence[np.ndarray]
    ) -> EvalResult:
        """Loss and accuracy of the global weights on one client's local test split."""
        data = self.client_data(client_id)
        start = time.perf_counter()
        self.model.restore(global_weights)
        result = self.model.evaluate(data.test_images, data.test_labels)
        return EvalResult(
            result.num_examples,
            result.loss,
            result.accuracy,
            time.perf_counter() - start,
        )

    def personalize(
        self, client_id: int, global_weights: Sequence[np.ndarray], epochs: int
    ) -> PersonalResult:
        """One client's fine-tuning of the global weights on its own training
        split, evaluated before and after on its local test split
        (:func:`fedtflite.personalization.personalize_client`)."""
        data = self.client_data(client_id)
        s = self.settings
        return personalize_client(
            self.model,
            client_id,
            global_weights,
            (data.train_images, data.train_labels),
            (data.test_images, data.test_labels),
            epochs=epochs,
            batch_size=s.batch_size,
            learning_rate=s.learning_rate,
            seed=s.partition.seed,
        )


@functools.lru_cache(maxsize=2)
def get_worker(settings: ClientSettings) -> Worker:
    """This process's :class:`Worker` for ``settings`` (built once, then cached)."""
    return Worker(settings)
