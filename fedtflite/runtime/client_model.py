"""The client runtime: one LiteRT interpreter running a client model's signatures.

Importing this module never imports TensorFlow. One :class:`ClientModel` serves
many simulated clients in turn: :meth:`ClientModel.restore` loads a client's
weights and resets the optimizer state, so nothing of the previous client
survives (the weights are overwritten and every optimizer slot is zeroed by the
model's own ``restore``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
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
    TRAIN_TAIL,
    ModelContract,
    check_flatbuffer,
    read_contract,
    signature_io,
)

__all__ = [
    "PLAN_ROWS",
    "ClientModel",
    "EvalResult",
    "FitResult",
    "StagedWeights",
    "TrainPlan",
]

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


PLAN_ROWS = 4096
"""A :class:`TrainPlan` of at most this many rows (epochs x examples) holds
every step's inputs; a longer one makes them as it runs (bounded memory)."""

_Step = tuple[dict[str, np.ndarray], int, int]
"""One ``train`` step: its inputs by name, its real rows, its epoch (1-based)."""


@dataclass(frozen=True)
class TrainPlan:
    """One client's local training, every ``train`` step's inputs ready.

    :meth:`ClientModel.plan_fit` does all of a client's Python and numpy work
    (validation, shuffling, gathering, label encoding, padding, noise draws);
    :meth:`ClientModel.run_plan` then does little but the interpreter's calls.
    A worker can so prepare several clients before running them: measured on a
    cohort of 60-example ``mlp`` clients, interleaving that work with the
    ``Invoke``s costs ~100 us a client more (caches the interpreter evicts).
    ``run_plan(plan_fit(...))`` is :meth:`ClientModel.fit`.

    Attributes
    ----------
    steps : iterable of (dict, int, int)
        Per step: ``train``'s inputs by name, the real rows (the step's weight
        in the mean loss), the epoch (1-based). A tuple up to
        :data:`PLAN_ROWS` rows; beyond, a generator that makes them as they run.
    num_examples : int
        The client's examples ``n``.
    seconds : float
        Wall time of the planning.
    batch_size : int or None
        The full batch. A step of fewer real rows goes through the model's
        ``train_tail`` when it has one (see :mod:`fedtflite.runtime.contract`);
        None: every step through ``train``.
    """

    steps: Iterable[_Step]
    num_examples: int
    seconds: float = 0.0
    batch_size: int | None = None

    @property
    def bytes_held(self) -> int:
        """Bytes of input the plan holds (0 for one that makes them as it runs)."""
        if not isinstance(self.steps, tuple):
            return 0
        return sum(a.nbytes for feed, _, _ in self.steps for a in feed.values())


@dataclass(frozen=True, eq=False)
class StagedWeights(Sequence[np.ndarray]):
    """Weights validated once for many ``restore`` calls (:meth:`ClientModel.stage`).

    A cohort of clients all restore the same global weights: a model restoring
    the staged weights it restored last only runs ``restore`` again, without
    copying them into its input tensors. Read-only copies, so they cannot change
    in between. A sequence of the arrays, like the list it was made from.
    """

    arrays: tuple[np.ndarray, ...]
    owner: object = field(repr=False)
    """The token of the :class:`ClientModel` that validated them (an object,
    not an ``id``: a later model can never reuse it)."""

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        return self.arrays[index]

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.arrays)


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
    a third of a small model's ``train`` step). Inputs are copied into the
    tensors (``SetTensor``), not written into them through views: LiteRT may
    move a tensor on the first ``Invoke`` after an allocation, when it applies
    its default delegate. The calls it makes are the ``SignatureRunner``'s own;
    if this LiteRT lacks the attributes it uses, it falls back to the
    ``SignatureRunner``.
    """

    def __init__(self, interpreter: Any, key: str):
        self._plain = interpreter.get_signature_runner(key)
        try:
            self._wrapper = interpreter._interpreter
            self._subgraph = self._plain._subgraph_index
            self._inputs: dict[str, int] = dict(self._plain._inputs)
            self._outputs: list[tuple[str, int]] = list(self._plain._outputs)
            self._output_index = dict(self._outputs)
        except AttributeError:  # pragma: no cover - another LiteRT version
            self._wrapper = None
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._allocated = False
        self.allocations = 0
        """How often the tensors were (re)allocated: inputs set before stay only
        while this is unchanged."""

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        w = self._wrapper
        if w is None:  # pragma: no cover - another LiteRT version
            result: dict[str, np.ndarray] = self._plain(**inputs)
            return result
        self._set(inputs)
        w.Invoke(self._subgraph)
        sub = self._subgraph
        return {name: w.GetTensor(index, sub) for name, index in self._outputs}

    def run(self, inputs: dict[str, np.ndarray], output: str) -> Any:
        """Set ``inputs``, ``Invoke``, return the one output ``output`` (a copy)."""
        w = self._wrapper
        if w is None:  # pragma: no cover - another LiteRT version
            return self._plain(**inputs)[output]
        self._set(inputs)
        w.Invoke(self._subgraph)
        return w.GetTensor(self._output_index[output], self._subgraph)

    def outputs(self, names: Sequence[str], *, copy: bool = True) -> list[np.ndarray]:
        """``Invoke`` a signature without inputs; its outputs ``names``: copies,
        or (``copy=False``) read-only views valid until this runner's next call."""
        w = self._wrapper
        if w is None:  # pragma: no cover - another LiteRT version
            out = self._plain()
            return [out[n] for n in names]
        if not self._allocated:
            self._set({})
        sub = self._subgraph
        w.Invoke(sub)
        index = self._output_index
        if copy:
            return [w.GetTensor(index[n], sub) for n in names]
        views = [w.tensor(w, index[n], sub) for n in names]
        for v in views:
            v.flags.writeable = False
        return views

    @property
    def reinvokable(self) -> bool:
        """Whether :meth:`invoke` can run again on the inputs set last (not
        through the ``SignatureRunner`` fallback, which sets them every call)."""
        return self._wrapper is not None

    def invoke(self) -> None:
        """``Invoke`` on the inputs the tensors hold (the last call's)."""
        if self._wrapper is None:  # pragma: no cover - another LiteRT version
            raise RuntimeError("this LiteRT has no Invoke without inputs")
        self._wrapper.Invoke(self._subgraph)

    def _set(self, inputs: dict[str, np.ndarray]) -> None:
        w, sub, shapes = self._wrapper, self._subgraph, self._shapes
        resized = not self._allocated
        for name, value in inputs.items():
            if shapes.get(name) != value.shape:
                shape = np.array(value.shape, dtype=np.int32)
                w.ResizeInputTensor(self._inputs[name], shape, False, sub)
                shapes[name] = value.shape
                resized = True
        if resized:
            w.AllocateTensors(sub)
            self._allocated = True
            self.allocations += 1
        for name, value in inputs.items():
            w.SetTensor(self._inputs[name], value, sub)


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
        # a dynamic-batch model's partial batches go through train_tail, so
        # neither subgraph is re-allocated for them (fixed batches never are)
        self._train_tail = (
            runner(TRAIN_TAIL)
            if TRAIN_TAIL in self.contract.extra_signatures
            and self.contract.train_batch is None
            else None
        )
        self._set_lr = (
            runner("set_learning_rate")
            if "set_learning_rate" in self.contract.extra_signatures
            else None
        )
        self._names = [p.name for p in self.contract.parameters]
        self._restored: tuple[StagedWeights, int] | None = None
        self._token = object()  # what this model's StagedWeights carry
        self._masks: dict[int, np.ndarray] = {}
        self._lr_value: tuple[float, int] | None = None
        c = self.contract
        # one-hot rows by class id, built once (a client's labels index it)
        self._one_hot = np.eye(c.num_classes, dtype=np.float32)

    # -- weights ---------------------------------------------------------------

    def parameters(
        self, *, check_finite: bool = False, copy: bool = True
    ) -> list[np.ndarray]:
        """Every weight, in order ``a0, a1, ...``.

        Parameters
        ----------
        check_finite : bool, default False
            Raise when a weight holds NaN or inf.
        copy : bool, default True
            Copies. False: read-only views of the interpreter's output tensors,
            valid only until the next call on this model (a 400 KB copy less
            per ``mlp`` client, for a caller that reads them at once).

        Raises
        ------
        NonFiniteError
            With ``check_finite``, when a weight holds NaN or inf.
        """
        weights = self._parameters.outputs(self._names, copy=copy)
        if check_finite:
            # a NaN or inf anywhere makes the dot product non-finite (one BLAS
            # pass, no mask array); large finite weights can overflow it, so
            # check element-wise then
            with np.errstate(over="ignore"):
                for name, w in zip(self._names, weights, strict=True):
                    flat = w.reshape(-1)
                    if np.isfinite(np.dot(flat, flat)) or np.isfinite(w).all():
                        continue
                    bad = int(np.size(w) - np.isfinite(w).sum())
                    raise NonFiniteError(
                        f"{self.contract.source}: parameter {name} holds {bad} "
                        "non-finite values after training; lower the learning rate"
                    )
        return weights

    def restore(self, weights: Sequence[np.ndarray]) -> None:
        """Load ``weights`` and reset the optimizer state (the model's `restore`).

        ``weights`` from :meth:`stage` that this model restored last are not
        copied into the input tensors again: only `restore` runs.

        Raises
        ------
        WeightsMismatchError
            Wrong count, shape or dtype.
        """
        runner = self._restore
        if isinstance(weights, StagedWeights) and weights.owner is self._token:
            if runner.reinvokable and self._restored == (weights, runner.allocations):
                runner.invoke()
                return
            runner(**dict(zip(self._names, weights.arrays, strict=True)))
            self._restored = (weights, runner.allocations)
            return
        self._restored = None
        runner(**self._weights_feed(weights, "restore"))

    def stage(self, weights: Sequence[np.ndarray]) -> StagedWeights:
        """``weights`` validated once for many :meth:`restore` calls (read-only
        copies; see :class:`StagedWeights`).

        Raises
        ------
        WeightsMismatchError
            Wrong count, shape or dtype.
        """
        arrays = []
        for w in self._weights_feed(weights, "restore").values():
            a = np.array(w)
            a.flags.writeable = False
            arrays.append(a)
        return StagedWeights(tuple(arrays), self._token)

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
        runner = self._set_lr
        if runner.reinvokable and self._lr_value == (lr, runner.allocations):
            runner.invoke()  # its input tensor still holds ``lr``
            return
        runner(lr=np.asarray(lr, np.float32))
        self._lr_value = (lr, runner.allocations)

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

    def _images(self, images: np.ndarray, *, dtype: Any = np.float32) -> np.ndarray:
        c = self.contract
        images = np.asarray(images)
        n = images.shape[0] if images.ndim else 0
        pixels = math.prod(images.shape[1:]) if images.ndim >= 2 else -1
        if pixels != math.prod(c.image_shape):  # (also for zero images)
            raise DataShapeError(
                f"{c.source}: images of shape {list(images.shape)} do not fit input x "
                f"[B,{','.join(map(str, c.image_shape))}] (784 pixels per example)"
            )
        if images.dtype != dtype:
            expected = "float32 in [0, 1]" if dtype == np.float32 else np.dtype(dtype)
            raise DataShapeError(
                f"{c.source}: images are {images.dtype.name}; expected {expected}"
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
        start = time.perf_counter()
        plan = self.plan_fit(
            images,
            labels,
            epochs=epochs,
            batch_size=batch_size,
            rng=rng,
            max_steps=max_steps,
        )
        fit = self.run_plan(plan)
        return dataclasses.replace(fit, seconds=time.perf_counter() - start)

    def plan_fit(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        epochs: int,
        batch_size: int,
        rng: np.random.Generator,
        max_steps: int | None = None,
        convert: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> TrainPlan:
        """:meth:`fit`'s steps, their inputs gathered now (see :class:`TrainPlan`).

        Parameters and errors are :meth:`fit`'s (but for the non-finite loss,
        which :meth:`run_plan` raises). A plan of up to :data:`PLAN_ROWS` rows
        makes every draw from ``rng`` here, in :meth:`fit`'s order, so it can
        run later and train exactly as :meth:`fit`; a longer one draws as it
        runs (same order: ``rng`` must not be used in between) and runs once.
        ``convert`` (e.g. :func:`fedtflite.data.to_float`) makes the float32
        images of stored ones (e.g. uint8 pixels) after each epoch's gather, so
        only the rows a step needs are converted, once (element-wise: the same
        values as converting first).
        """
        start = time.perf_counter()
        c = self.contract
        if convert is None:
            x_all = self._images(images)
        else:
            x_all = self._images(images, dtype=np.asarray(images).dtype)
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
        steps: Iterable[_Step] = self._steps(
            x_all, y_all, epochs, batch_size, rng, budget, convert
        )
        if epochs * n <= PLAN_ROWS:
            steps = tuple(steps)
        return TrainPlan(steps, n, time.perf_counter() - start, batch_size)

    def run_plan(self, plan: TrainPlan) -> FitResult:
        """Run a :meth:`plan_fit` plan: ``train`` on each step's inputs.

        Raises
        ------
        NonFiniteError
            A non-finite loss (training stops there).
        """
        start = time.perf_counter()
        total, steps, trained = 0.0, 0, 0
        run = self._train.run
        tail = run if self._train_tail is None else self._train_tail.run
        full = plan.batch_size
        for feed, real, epoch in plan.steps:
            loss = float((run if full is None or real >= full else tail)(feed, "loss"))
            if not math.isfinite(loss):
                raise NonFiniteError(
                    f"{self.contract.source}: train returned loss {loss} at step "
                    f"{steps + 1} (epoch {epoch}); lower the learning rate"
                )
            total += loss * real
            trained += real
            steps += 1
        seconds = time.perf_counter() - start + plan.seconds
        mean = total / trained if trained else float("nan")
        return FitResult(
            num_examples=plan.num_examples, num_steps=steps, loss=mean, seconds=seconds
        )

    def _steps(
        self,
        x_all: np.ndarray,
        y_all: np.ndarray,
        epochs: int,
        batch_size: int,
        rng: np.random.Generator,
        budget: float,
        convert: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> Iterator[_Step]:
        """The steps of :meth:`fit`, in order, drawing from ``rng`` as they go."""
        n = x_all.shape[0]
        steps = 0
        for epoch in range(1, epochs + 1):
            if steps >= budget:
                return
            order = rng.permutation(n)
            # the epoch's examples in shuffled order, gathered at once: every
            # full batch is then a contiguous slice of them
            x_epoch = np.take(x_all, order, axis=0)
            if convert is not None:
                x_epoch = convert(x_epoch)
            y_epoch = np.take(y_all, order, axis=0)
            for s in range(0, n, batch_size):
                if steps >= budget:
                    return
                real = min(batch_size, n - s)
                feed = self._step(x_epoch, y_epoch, s, real, rng)
                yield feed, real, epoch
                steps += 1

    def _step(
        self,
        x_epoch: np.ndarray,
        y_epoch: np.ndarray,
        s: int,
        real: int,
        rng: np.random.Generator,
    ) -> dict[str, np.ndarray]:
        """One step's ``train`` inputs: rows ``s : s + real`` of the epoch's
        examples in shuffled order.

        A fixed-batch model's partial batch is zero-padded and masked out when
        the model has a ``mask``, else filled with the epoch's first examples.
        Then one uniform draw per ``noise`` input, in order, from ``rng``.
        """
        c = self.contract
        rows = c.train_batch or real
        feed: dict[str, np.ndarray]
        if real == rows:  # a full batch: slices of the epoch's arrays
            feed = {"x": x_epoch[s : s + rows], "y": y_epoch[s : s + rows]}
            if c.has_mask:
                feed["mask"] = self._ones(rows)
        elif c.has_mask:  # zero padding, masked out
            x = np.zeros((rows, *x_epoch.shape[1:]), x_epoch.dtype)
            y = np.zeros((rows, *y_epoch.shape[1:]), y_epoch.dtype)
            x[:real] = x_epoch[s : s + real]
            y[:real] = y_epoch[s : s + real]
            mask = np.zeros(rows, np.float32)
            mask[:real] = 1
            feed = {"x": x, "y": y, "mask": mask}
        else:  # filled with the epoch's first examples
            n = len(x_epoch)
            idx = np.concatenate(
                [np.arange(s, s + real), np.resize(np.arange(n), rows - real)]
            )
            feed = {"x": x_epoch[idx], "y": y_epoch[idx]}
        for t in c.noise:  # fresh uniform draws per step (dropout masks)
            shape = (rows if t.shape[0] < 0 else t.shape[0], *t.shape[1:])
            feed[t.name] = rng.random(shape, dtype=np.float32)
        return feed

    def _ones(self, rows: int) -> np.ndarray:
        """A read-only mask of ``rows`` real rows."""
        ones = self._masks.get(rows)
        if ones is None:
            ones = np.ones(rows, np.float32)
            ones.flags.writeable = False
            self._masks[rows] = ones
        return ones

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
