"""Every exception fedtflite raises on purpose.

Each message is one line that names the file, signature, tensor, key or shape that
was wrong and says what would have been valid. Catch :class:`FedTfliteError` to
handle them all; the CLI turns them into exit code 2 without a traceback.
"""

from __future__ import annotations

import signal

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataFormatError",
    "DataMissingError",
    "DataShapeError",
    "DeviceFileError",
    "ExportError",
    "FedTfliteError",
    "FlexOpsError",
    "KerasModelError",
    "MissingSignatureError",
    "ModelFileError",
    "NonFiniteError",
    "PartitionError",
    "RunDirBusyError",
    "RunFailedError",
    "RunInterruptedError",
    "SignatureMismatchError",
    "UnsafePickleError",
    "WeightsMismatchError",
    "invalid_value",
]


class FedTfliteError(Exception):
    """Base class of all fedtflite errors."""


class ModelFileError(FedTfliteError):
    """The file is not a `.tflite` flatbuffer, is truncated, or cannot be loaded."""


class FlexOpsError(ModelFileError):
    """The model needs Select-TF (Flex) or custom ops, which LiteRT here cannot run."""


class MissingSignatureError(ModelFileError):
    """One of `train`, `infer`, `parameters`, `restore` is missing."""


class SignatureMismatchError(ModelFileError):
    """A signature's inputs/outputs break the client-model contract.

    For instance `restore` inputs that do not match `parameters` outputs, or a
    `train` signature without an image input.
    """


class WeightsMismatchError(FedTfliteError):
    """Weights of the wrong count, name, shape or dtype for this model."""


class DataShapeError(FedTfliteError):
    """Data whose shape or dtype does not fit the model's inputs."""


class NonFiniteError(FedTfliteError):
    """Training produced a non-finite (NaN or inf) loss or weight."""


class DataMissingError(FedTfliteError):
    """Fashion-MNIST is not found in any of the looked-up directories."""


class DataFormatError(FedTfliteError):
    """A data file exists but is not a valid IDX file of the expected kind."""


class KerasModelError(FedTfliteError):
    """A Keras model fedtflite cannot turn into a trainable `.tflite`.

    An unsupported layer or layer option (named by class and name), a graph that
    is not a chain, an unsupported loss or optimizer setting, or an input or
    output shape that does not fit Fashion-MNIST.
    """


class ConfigError(FedTfliteError):
    """An unknown configuration key or a value outside its valid range."""


class PartitionError(ConfigError):
    """Partition settings that cannot work (bad alpha, k, client count...)."""


class RunDirBusyError(FedTfliteError):
    """Another live process holds the run directory's lock (its pid is named)."""


class RunFailedError(FedTfliteError):
    """A run that ran but failed: a round aggregated no update (every sampled
    client failed), or a worker process died and could not be replaced. The CLI
    exits with code 3 (not 2, which means the input was refused)."""


class RunInterruptedError(FedTfliteError):
    """SIGINT or SIGTERM ended the run (between two rounds' records).

    Attributes
    ----------
    signum : int
        The signal; the CLI exits with ``128 + signum`` (130, 143).
    """

    def __init__(self, signum: int, message: str = ""):
        name = signal.Signals(signum).name if signum else "a stop request"
        super().__init__(message or f"interrupted by {name}")
        self.signum = signum


class CheckpointError(FedTfliteError):
    """A run directory's checkpoint that cannot be resumed (unreadable, written
    for another config, or ahead of its ``history.csv``)."""


class ExportError(FedTfliteError):
    """A run or model that cannot be exported: an unfinished run, final weights
    that do not fit its model, an unknown format, a file with no source to rebuild."""


class DeviceFileError(FedTfliteError):
    """A device-profile or availability file that cannot be read: unknown format,
    a missing column, a value out of range (the message names file, row, column)."""


class UnsafePickleError(DeviceFileError):
    """A pickle that asks to build anything but dicts, lists, numbers and strings.

    It is refused before anything in it runs: a pickle is a program."""


def invalid_value(key: str, value: object, expected: str) -> str:
    """The one message of a bad setting, wherever it is checked.

    Parameters
    ----------
    key : str
        The config key (``alpha``), or the flag, the user wrote.
    value : object
        The value given; shown with ``repr``.
    expected : str
        What would be valid (``> 0``, ``one of sgd, adam``).

    Returns
    -------
    str
        ``<key> = <value> is not valid: expected <expected>``.
    """
    return f"{key} = {value!r} is not valid: expected {expected}"
