"""What a client needs to know about the run, carried in every message's ConfigRecord.

The server fills it once per run; the ClientApp reads it from the message, so
``flwr run`` and the Python API behave the same and a worker on another Ray
node needs nothing but the message (plus the model file and the data set).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from fedtflite.data import PartitionSpec
from fedtflite.errors import ConfigError

__all__ = ["ClientSettings"]

_PREFIX = "run."
_PARTITION = "run.partition."


@dataclass(frozen=True)
class ClientSettings:
    """Run-level client settings.

    Attributes
    ----------
    model_path : str
        Absolute path of the `.tflite` every client runs.
    model_sha256 : str
        Its digest; a worker whose file differs refuses to train.
    partition_path : str
        ``partition.npz`` written by the server (client index arrays); a worker
        that cannot read it recomputes the same partition from ``partition``.
    partition : PartitionSpec
        The partition; its ``seed`` (the run's ``seed``) also seeds each
        client's shuffling and local test split.
    client_test_fraction : float
        Share of a client's examples held out as its local test split.
    data_dir : str
        Fashion-MNIST directory ("" = default look-up).
    local_epochs, batch_size : int
        Local training.
    learning_rate : float or None
        Set through ``set_learning_rate`` before every client's training; None
        when the model has no ``set_learning_rate`` (its rate is fixed in the
        file). Absent from the ConfigRecord when None.
    state_dir : str
        Where clients keep what a phone would keep between rounds (SCAFFOLD's
        control variate), one file per client id.
    """

    model_path: str
    model_sha256: str
    partition_path: str
    partition: PartitionSpec
    client_test_fraction: float
    data_dir: str
    local_epochs: int
    batch_size: int
    learning_rate: float | None
    state_dir: str

    def to_config(self) -> dict[str, Any]:
        """Entries for a Flower ConfigRecord (keys prefixed ``run.``; the
        partition's ``run.partition.``)."""
        values = {
            _PREFIX + k: v
            for k, v in asdict(self).items()
            if k != "partition" and v is not None
        }
        for k, v in asdict(self.partition).items():
            values[_PARTITION + k] = v
        return values

    @classmethod
    def from_config(cls, config: Any) -> ClientSettings:
        """Read them back from a ConfigRecord (or any mapping).

        Raises
        ------
        ConfigError
            A key is missing: the message did not come from fedtflite's ServerApp.
        """
        try:
            values: dict[str, Any] = {
                f.name: config[_PREFIX + f.name]
                for f in fields(cls)
                if f.name not in ("partition", "learning_rate")
            }
            values["learning_rate"] = config.get(_PREFIX + "learning_rate")
            values["partition"] = PartitionSpec(
                **{f.name: config[_PARTITION + f.name] for f in fields(PartitionSpec)}
            )
        except KeyError as e:
            raise ConfigError(
                f"message config lacks {e.args[0]!r}: this ClientApp needs "
                "fedtflite's ServerApp (server.server_app:app)"
            ) from None
        return cls(**values)
