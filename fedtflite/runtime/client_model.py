"""The client runtime: one LiteRT interpreter running a client model's signatures.

Importing this module never imports TensorFlow. One :class:`ClientModel` serves
many simulated clients in turn: :meth:`ClientModel.restore` loads a client's
weights and resets the optimizer state, so nothing of the previous client
survives (the weights are overwritten and every optimizer slot is zeroed by the
model's own ``restore``).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedtflite.errors import (
    DataShapeError,
    ModelFileError,
    NonFiniteError,
    SignatureMismatchError,
    WeightsMismatchError,
)
from fedtflite.native_logs import LITERT_START, dropping
from fedtflite.runtime.contract import (
    ModelContract,
    check_flatbuffer,
    read_contract,
    signature_io,
)

__all__ = ["ClientModel", "EvalResult", "FitResult"]

_EVAL_CHUNK = 1024


@dataclass(frozen=True)
class FitResult:
    """Outcome of local training.

    Attributes
    ----------
    num_examples : int
        Examples trained on per epoch.
    num_steps : int
        `train` invocations (optimizer steps).
    loss : float
        Mean training loss over every example of every epoch, as reported by
        `train` before each step (batch losses weighted by real rows).
    seconds : float
        Wall time of the `train` invocations and batch assembly.
    """

    num_examples: int
    num_steps: int
    loss: float
    seconds: float


@dataclass(frozen=True)
class EvalResult:
    """Outcome of evaluation through `infer`.

    Attributes
    ----------
    num_examples : int
        Examples evaluated.
    loss : float
        Mean cross-entropy.
    accuracy : float
        Fraction of examples whose arg-max class is the label.
    seconds : float
        Wall time.
    """

    num_examples: int
    loss: float
    accuracy: float
    seconds: float


def _read_model(model: bytes | str | Path, source: str | None) -> tuple[bytes, str]:
    if isinstance(model, bytes | bytearray | memoryview):
        return bytes(model), source or "<bytes>"
    path = Path(model)
    try:
        return path.read_bytes(), str(path)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such model file") from None
    except IsADirectoryError:
        raise ModelFileError(
            f"{path}: is a directory, expected a .tflite file"
        ) from None


class _Runner:
    """Calls one signature like LiteRT's ``SignatureRunner``, minus its per-call cost.

    ``SignatureRunner.__call__`` resizes every input and re-allocates the
    subgraph's tensors on every call; a client calls ``restore``, ``train`` (per
    batch) and ``parameters`` with the same shapes over and over, so this runner
    resizes and allocates only when an input's shape changes (~0.1 ms a call,
    a third of a small model's ``train`` step). :meth:`buffers` keeps one set of
    input arrays per shape, so a batch is gathered into memory that already
    exists and then copied into the tensors once. (Not into the tensors
    themselves: LiteRT may move them on the first ``Invoke`` after an
    allocation, when it applies its default delegate.) The calls it makes are
    the ``SignatureRunner``'s own; if this LiteRT lacks the attributes it uses,
    it falls back to the ``SignatureRunner``.
    """

    def __init__(self, interpreter: Any, key: str):
        self._plain = interpreter.get_signature_runner(key)
        try:
            self._wrapper = interpreter._interpreter
            self._subgraph = self._plain._subgraph_index
            self._inputs: dict[str, int] = dict(self._plain._inputs)
            self._outputs: list[tuple[str, int]] = list(self._plain._outputs)
        except AttributeError:  # pragma: no cover - another LiteRT version
            self._wrapper = None
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._allocated = False
        self._buffers: dict[tuple[tuple[str, tuple[int, ...]], ...], Any] = {}

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        w = self._wrapper
        if w is None:  # pragma: no cover - another LiteRT version
            result: dict[str, np.ndarray] = self._plain(**inputs)
            return result
        sub = self._subgraph
        resized = not self._allocated
        for name, value in inputs.items():
            if self._shapes.get(name) != value.shape:
                shape = np.array(value.shape, dtype=np.int32)
                w.ResizeInputTensor(self._inputs[name], shape, False, sub)
                self._shapes[name] = value.shape
                resized = True
        if resized:
            w.AllocateTensors(sub)
            self._allocated = True
        for name, value in inputs.items():
            w.SetTensor(self._inputs[name], value, sub)
        w.Invoke(sub)
        return {name: w.GetTensor(index, sub) for name, index in self._outputs}

    def buffers(
        self, shapes: dict[str, tuple[int, ...]], dtypes: dict[str, np.dtype[Any]]
    ) -> dict[str, np.ndarray]:
        """Input arrays of these shapes, made once per shape and then reused.

        Their content is whatever the previous user left: fill every row.
        """
        key = tuple(shapes.items())
        found: dict[str, np.ndarray] | None = self._buffers.get(key)
        if found is None:
            found = {name: np.zeros(s, dtypes[name]) for name, s in shapes.items()}
            self._buffers[key] = found
        return found


class ClientModel:
    """A validated client model on a LiteRT interpreter.

    Parameters
    ----------
    model : bytes, str or Path
        The `.tflite` file or its bytes.
    num_threads : int, default 1
        Interpreter threads; the simulation runs one process per core.
    source : str, optional
        What errors call the model (default: its path, or ``<bytes>``), e.g.
        the config's ``model`` value when the bytes came from a build.

    Raises
    ------
    ModelFileError, FlexOpsError, MissingSignatureError, SignatureMismatchError
        When the file breaks the client-model contract
        (:mod:`fedtflite.runtime.contract`).
    """

    def __init__(
        self,
        model: bytes | str | Path,
        *,
        num_threads: int = 1,
        source: str | None = None,
    ):
        from ai_edge_litert.interpreter import Interpreter

        data, source = _read_model(model, source)
        ops = check_flatbuffer(data, source)
        try:
            self._interpreter = Interpreter(model_content=data, num_threads=num_threads)
        except (ValueError, RuntimeError) as e:
            first = (
                str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            )
            raise ModelFileError(
                f"{source}: LiteRT cannot load the model: {first}"
            ) from None
        with dropping(LITERT_START):  # applies the default delegate, logged at INFO
            self._interpreter.allocate_tensors()
        self.contract: ModelContract = read_contract(self._interpreter, source, ops)
        self.model_bytes = data
        self.sha256 = hashlib.sha256(data).hexdigest()

        def runner(key: str) -> _Runner:
            return _Runner(self._interpreter, key)

        self._runners: dict[str, _Runner] = {}
        self._train = runner("train")
        self._infer = runner("infer")
        self._parameters = runner("parameters")
        self._restore = runner("restore")
        self._set_lr = (
            runner("set_learning_rate")
            if "set_learning_rate" in self.contract.extra_signatures
            else None
        )
        self._names = [p.name for p in self.contract.parameters]
        c = self.contract
        self._train_dtypes: dict[str, np.dtype[Any]] = {
            "x": np.dtype(np.float32),
            "y": np.dtype(c.label_dtype),
            "mask": np.dtype(np.float32),
            **{t.name: t.dtype for t in c.noise},
        }
        # one-hot rows by class id, built once (a client's labels index it)
        self._one_hot = np.eye(c.num_classes, dtype=np.float32)

    # -- weights ---------------------------------------------------------------

    def parameters(self, *, check_finite: bool = False) -> list[np.ndarray]:
        """Every weight (copies), in order ``a0, a1, ...``.

        Raises
        ------
        NonFiniteError
            With ``check_finite``, when a weight holds NaN or inf.
        """
        out = self._parameters()
        weights = [out[n] for n in self._names]
        if check_finite:
            for name, w in zip(self._names, weights, strict=True):
                # a NaN or inf anywhere makes the sum non-finite (one pass, no
                # mask array); a finite array can overflow it, so check then
                if not np.isfinite(w.sum()) and not np.isfinite(w).all():
                    bad = int(np.size(w) - np.isfinite(w).sum())
                    raise NonFiniteError(
                        f"{self.contract.source}: parameter {name} holds {bad} "
                        "non-finite values after training; lower the learning rate"
                    )
        return weights

    def restore(self, weights: Sequence[np.ndarray]) -> None:
        """Load ``weights`` and reset the optimizer state (the model's `restore`).

        Raises
        ------
        WeightsMismatchError
            Wrong count, shape or dtype.
        """
        self._restore(**self._weights_feed(weights, "restore"))

    def _weights_feed(
        self, weights: Sequence[np.ndarray], signature: str
    ) -> dict[str, np.ndarray]:
        specs = self.contract.parameters
        if len(weights) != len(specs):
            raise WeightsMismatchError(
                f"{self.contract.source}: {signature} got {len(weights)} arrays; the "
                f"model has {len(specs)} ({', '.join(str(s) for s in specs)})"
            )
        feed = {}
        for spec, w in zip(specs, weights, strict=True):
            w = np.asarray(w)
            if w.shape != spec.shape or w.dtype != spec.dtype:
                raise WeightsMismatchError(
                    f"{self.contract.source}: {signature} {spec.name} got "
                    f"{w.dtype.name}{list(w.shape)}; expected {spec}"
                )
            feed[spec.name] = w
        return feed

    def set_learning_rate(self, lr: float) -> None:
        """Set the learning rate through the optional ``set_learning_rate`` signature.

        Raises
        ------
        SignatureMismatchError
            The model has no ``set_learning_rate`` signature.
        """
        if self._set_lr is None:
            raise SignatureMismatchError(
                f"{self.contract.source}: has no set_learning_rate signature; its "
                "learning rate is fixed in the file (leave learning-rate unset)"
            )
        self._set_lr(lr=np.asarray(lr, np.float32))

    def _knob(self, signature: str, purpose: str) -> Any:
        if signature not in self.contract.extra_signatures:
            raise SignatureMismatchError(
                f"{self.contract.source}: has no {signature} signature, needed for "
                f"{purpose}; build the model with it (fedtflite build ... {purpose})"
            )
        if signature not in self._runners:
            self._runners[signature] = _Runner(self._interpreter, signature)
        return self._runners[signature]

    def set_proximal_mu(self, mu: float) -> None:
        """FedProx: set ``mu`` of the model's proximal term (``set_proximal_mu``).

        Raises
        ------
        SignatureMismatchError
            The model was not built with a proximal term.
        """
        self._knob("set_proximal_mu", "--proximal")(mu=np.asarray(mu, np.float32))

    def set_correction(self, correction: Sequence[np.ndarray]) -> None:
        """SCAFFOLD: set ``c - c_i``, added to every gradient (``set_correction``).

        Raises
        ------
        SignatureMismatchError
            The model was not built for SCAFFOLD.
        WeightsMismatchError
            Arrays that do not match the parameters.
        """
        runner = self._knob("set_correction", "--scaffold")
        runner(**self._weights_feed(correction, "set_correction"))

    @property
    def supports_learning_rate(self) -> bool:
        """True when the model exposes ``set_learning_rate``."""
        return self._set_lr is not None

    # -- data ------------------------------------------------------------------

    def _images(self, images: np.ndarray) -> np.ndarray:
        c = self.contract
        images = np.asarray(images)
        n = images.shape[0] if images.ndim else 0
        pixels = int(np.prod(images.shape[1:])) if images.ndim >= 2 else -1
        if pixels != int(np.prod(c.image_shape)):  # (also for zero images)
            raise DataShapeError(
                f"{c.source}: images of shape {list(images.shape)} do not fit input x "
                f"[B,{','.join(map(str, c.image_shape))}] (784 pixels per example)"
            )
        if images.dtype != np.float32:
            raise DataShapeError(
                f"{c.source}: images are {images.dtype.name}; "
                "expected float32 in [0, 1]"
            )
        return images.reshape((n, *c.image_shape))

    def _labels(self, labels: np.ndarray, n: int) -> np.ndarray:
        c = self.contract
        labels = np.asarray(labels)
        if labels.shape != (n,) or labels.dtype.kind not in "iu":
            raise DataShapeError(
                f"{c.source}: labels of shape {list(labels.shape)} "
                f"({labels.dtype.name}) "
                f"for {n} images; expected integer class ids of shape [{n}]"
            )
        if n and (labels.min() < 0 or labels.max() >= c.num_classes):
            raise DataShapeError(
                f"{c.source}: labels span {labels.min()}..{labels.max()}; the model "
                f"has {c.num_classes} classes (0..{c.num_classes - 1})"
            )
        if c.one_hot_labels:
            one_hot: np.ndarray = self._one_hot[labels]
            return one_hot
        return labels.astype(c.label_dtype)

    # -- train / evaluate --------------------------------------------------------

    def fit(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        epochs: int,
        batch_size: int,
        rng: np.random.Generator,
        max_steps: int | None = None,
    ) -> FitResult:
        """Train ``epochs`` passes over the data in shuffled batches.

        Every example is trained once per epoch; the last partial batch is
        trained too. With ``max_steps`` training stops after that many steps
        (a device that runs out of time: FedProx's variable local work). On a
        fixed-batch model with a ``mask`` input the partial batch is zero-padded
        and masked out of the loss; on a fixed-batch model without one it is
        filled with the epoch's first examples (as a repeating input pipeline
        would).

        Parameters
        ----------
        images : np.ndarray
            float32 ``[n, 28, 28]`` (or any shape with 784 pixels per example).
        labels : np.ndarray
            Integer class ids ``[n]``.
        epochs, batch_size : int
            Passes and batch size; a fixed-batch model needs its own batch size.
        rng : np.random.Generator
            Source of the shuffling, and of the uniform draws a model with
            ``noise`` inputs (dropout) gets for every step.
        max_steps : int, optional
            Most ``train`` steps over all epochs (None: no limit); the steps run
            are the first ones of the full schedule, in the same shuffled order.

        Returns
        -------
        FitResult
            ``num_examples`` is the client's data size ``n`` (its weight in an
            example-weighted mean) even when ``max_steps`` cut training short;
            ``loss`` is the mean over the examples actually trained.

        Raises
        ------
        DataShapeError
            Data or batch size that do not fit the model.
        NonFiniteError
            A non-finite loss (training stops there).
        """
        c = self.contract
        x_all = self._images(images)
        n = x_all.shape[0]
        y_all = self._labels(labels, n)
        if c.train_batch is not None and batch_size != c.train_batch:
            raise DataShapeError(
                f"{c.source}: train takes fixed batches of {c.train_batch}; "
                f"batch-size={batch_size} does not fit (use {c.train_batch} or "
                "rebuild the model with that batch size)"
            )
        if batch_size < 1 or epochs < 0:
            raise DataShapeError(
                f"batch-size must be >= 1 and epochs >= 0, got {batch_size}, {epochs}"
            )
        if max_steps is not None and max_steps < 0:
            raise DataShapeError(f"max_steps must be >= 0, got {max_steps}")
        budget = math.inf if max_steps is None else max_steps
        start = time.perf_counter()
        total, steps, trained = 0.0, 0, 0
        for epoch in range(1, epochs + 1):
            if steps >= budget:
                break
            order = rng.permutation(n)
            for s in range(0, n, batch_size):
                if steps >= budget:
                    break
                idx = order[s : s + batch_size]
                real = len(idx)
                feed = self._batch(x_all, y_all, idx, order, rng)
                loss = float(self._train(**feed)["loss"])
                if not np.isfinite(loss):
                    raise NonFiniteError(
                        f"{c.source}: train returned loss {loss} at step {steps + 1} "
                        f"(epoch {epoch}); lower the learning rate"
                    )
                total += loss * real
                trained += real
                steps += 1
        seconds = time.perf_counter() - start
        mean = total / trained if trained else float("nan")
        return FitResult(num_examples=n, num_steps=steps, loss=mean, seconds=seconds)

    def _batch(
        self,
        x_all: np.ndarray,
        y_all: np.ndarray,
        idx: np.ndarray,
        order: np.ndarray,
        rng: np.random.Generator,
    ) -> dict[str, np.ndarray]:
        """One step's ``train`` inputs, in buffers reused from step to step.

        A fixed-batch model's partial batch is zero-padded and masked out when
        the model has a ``mask``, else filled with the epoch's first examples.
        Then one uniform draw per ``noise`` input, in order, from ``rng``.
        """
        c = self.contract
        rows = c.train_batch or len(idx)
        if len(idx) < rows and not c.has_mask:  # fill with the epoch's first
            idx = np.concatenate([idx, np.resize(order, rows - len(idx))])
        real = len(idx)
        shapes = {"x": (rows, *x_all.shape[1:]), "y": (rows, *y_all.shape[1:])}
        if c.has_mask:
            shapes["mask"] = (rows,)
        for t in c.noise:
            shapes[t.name] = (rows if t.shape[0] < 0 else t.shape[0], *t.shape[1:])
        feed = self._train.buffers(shapes, self._train_dtypes)
        # mode="clip": ``take`` writes straight into ``out`` (indices are valid)
        np.take(x_all, idx, axis=0, out=feed["x"][:real], mode="clip")
        np.take(y_all, idx, axis=0, out=feed["y"][:real], mode="clip")
        if real < rows:  # zero padding, masked out
            feed["x"][real:] = 0
            feed["y"][real:] = 0
        if c.has_mask:
            feed["mask"][:real] = 1
            feed["mask"][real:] = 0
        for t in c.noise:  # fresh uniform draws per step (dropout masks)
            rng.random(dtype=np.float32, out=feed[t.name])
        return feed

    def predict(self, images: np.ndarray) -> np.ndarray:
        """``infer`` outputs for ``images``: logits (else probabilities)."""
        c = self.contract
        x_all = self._images(images)
        n = x_all.shape[0]
        chunk = c.infer_batch or _EVAL_CHUNK
        out = np.empty((n, c.num_classes), np.float32)
        for s in range(0, n, chunk):
            xb = x_all[s : s + chunk]
            real = xb.shape[0]
            if c.infer_batch is not None and real < chunk:
                xb = np.concatenate(
                    [xb, np.zeros((chunk - real, *xb.shape[1:]), np.float32)]
                )
            out[s : s + real] = self._infer(x=xb)[c.infer_output][:real]
        return out

    def evaluate(self, images: np.ndarray, labels: np.ndarray) -> EvalResult:
        """Mean cross-entropy and accuracy of the current weights through ``infer``."""
        start = time.perf_counter()
        n = len(labels)
        self._labels(labels, n)
        scores = self.predict(images)
        loss, acc = cross_entropy_and_accuracy(
            scores, np.asarray(labels), is_logits=self.contract.infer_output == "logits"
        )
        return EvalResult(n, loss, acc, time.perf_counter() - start)


def cross_entropy_and_accuracy(
    scores: np.ndarray, labels: np.ndarray, *, is_logits: bool
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``[n, C]`` logits (or probabilities).

    Returns ``(nan, nan)`` for ``n == 0``.
    """
    n = len(labels)
    if n == 0:
        return float("nan"), float("nan")
    rows = np.arange(n)
    if is_logits:
        z = scores - scores.max(axis=1, keepdims=True)
        logp = z[rows, labels] - np.log(np.exp(z).sum(axis=1))
    else:
        logp = np.log(np.clip(scores[rows, labels], 1e-12, None))
    acc = float(np.mean(scores.argmax(axis=1) == labels))
    return float(-logp.mean()), acc


def signature_table(model: ClientModel) -> list[str]:
    """One line per signature: ``name(inputs) -> outputs`` with shapes and dtypes."""
    lines = []
    for key in sorted(model._interpreter.get_signature_list()):
        ins, outs = signature_io(model._interpreter, key)
        args = ", ".join(str(t) for t in ins.values())
        rets = ", ".join(str(t) for t in outs.values())
        lines.append(f"{key}({args}) -> {{{rets}}}")
    return lines
