"""The client-model contract, checked once when a `.tflite` is loaded.

A valid client model has four signatures:

``train``
    Inputs ``x`` (images), ``y`` (labels), optionally ``mask`` (``float32[B]``,
    1 for real rows of a padded fixed-size batch) and optionally ``noise0,
    noise1, ...`` (``float32``, first dimension ``B`` or 1, the rest fixed:
    uniform ``[0, 1)`` draws the client makes fresh for every step from its own
    seeded stream, e.g. for dropout masks); an output ``loss``. ``x`` is
    ``float32`` ``[B,28,28]``, ``[B,28,28,1]`` or ``[B,784]``; ``y`` is one-hot
    ``float32[B,C]`` or class ids ``int32/int64[B]``. ``B`` is dynamic (-1) or fixed.
``infer``
    Input ``x`` (same layout), outputs ``logits`` and/or ``output`` (softmax
    probabilities), ``[B,C]``.
``parameters``
    No inputs; outputs ``a0, a1, ...``: every weight.
``restore``
    Inputs ``a0, a1, ...`` with exactly the names, shapes and dtypes of the
    ``parameters`` outputs.

Optional: ``set_learning_rate(lr: float32[])``, and ``train_tail`` with exactly
``train``'s inputs and outputs: the same step in a subgraph of its own, which a
client uses for its last, partial batch so that neither subgraph is re-allocated
for it (dynamic-batch models; :mod:`fedtflite.models.trainable` builds it). It
must compute what ``train`` computes; only its inputs and outputs are checked
here. The model must use builtin ops
only (no Flex / custom ops). This module reads the flatbuffer and the
interpreter's signature table; it never imports TensorFlow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedtflite.errors import (
    FlexOpsError,
    MissingSignatureError,
    ModelFileError,
    SignatureMismatchError,
)

__all__ = [
    "REQUIRED_SIGNATURES",
    "TRAIN_TAIL",
    "ModelContract",
    "TensorInfo",
    "check_flatbuffer",
    "read_contract",
    "signature_io",
]

REQUIRED_SIGNATURES = ("train", "infer", "parameters", "restore")
TRAIN_TAIL = "train_tail"
"""The optional second subgraph of ``train`` for partial batches."""
_LAYOUTS = {(28, 28): "hw", (28, 28, 1): "hwc", (784,): "flat"}
_PARAM_NAME = re.compile(r"^a(\d+)$")
_NOISE_NAME = re.compile(r"^noise(\d+)$")


@dataclass(frozen=True)
class TensorInfo:
    """Name, shape (``-1`` for a dynamic dimension) and dtype of a tensor."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    def __str__(self) -> str:
        dims = ",".join("None" if d < 0 else str(d) for d in self.shape)
        return f"{self.name}: {self.dtype.name}[{dims}]"


@dataclass(frozen=True)
class ModelContract:
    """What a validated client model looks like.

    Attributes
    ----------
    source : str
        The file path, or ``"<bytes>"``; used in every error message.
    image_shape : tuple of int
        Per-example shape of ``x``: ``(28, 28)``, ``(28, 28, 1)`` or ``(784,)``.
    num_classes : int
        Classes of ``infer``'s output.
    one_hot_labels : bool
        True when ``train`` takes one-hot ``float32`` labels, False for class ids.
    label_dtype : np.dtype
        dtype of ``train``'s ``y``.
    train_batch : int or None
        The fixed batch of ``train``, or None when it is dynamic.
    infer_batch : int or None
        The fixed batch of ``infer``, or None when it is dynamic.
    has_mask : bool
        ``train`` takes a ``mask`` input.
    infer_output : str
        ``"logits"`` when ``infer`` returns logits, else ``"output"`` (probabilities).
    parameters : tuple of TensorInfo
        The ``parameters`` outputs in index order ``a0, a1, ...``.
    extra_signatures : tuple of str
        Signatures beyond the four required ones (e.g. ``set_learning_rate``).
    ops : tuple of str
        Distinct operator names in the file.
    noise : tuple of TensorInfo
        ``train``'s uniform-noise inputs ``noise0, noise1, ...`` in order (first
        dimension -1: the batch).
    """

    source: str
    image_shape: tuple[int, ...]
    num_classes: int
    one_hot_labels: bool
    label_dtype: np.dtype[Any]
    train_batch: int | None
    infer_batch: int | None
    has_mask: bool
    infer_output: str
    parameters: tuple[TensorInfo, ...]
    extra_signatures: tuple[str, ...]
    ops: tuple[str, ...]
    noise: tuple[TensorInfo, ...] = ()

    @property
    def num_parameters(self) -> int:
        """Number of scalar weights."""
        return sum(int(np.prod(p.shape)) for p in self.parameters)

    @property
    def parameter_bytes(self) -> int:
        """Bytes of all weights."""
        return sum(int(np.prod(p.shape)) * p.dtype.itemsize for p in self.parameters)


def check_flatbuffer(data: bytes, source: str) -> tuple[str, ...]:
    """Check that ``data`` is a complete `.tflite` and return its op names.

    Raises
    ------
    ModelFileError
        Not a `.tflite` flatbuffer (wrong identifier) or truncated/corrupt.
    FlexOpsError
        The file uses Select-TF (Flex) or custom ops.
    """
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelFileError(
            f"{source}: not a .tflite model (expected the flatbuffer identifier "
            f"'TFL3' at bytes 4-8, got {data[4:8]!r}; {len(data)} bytes)"
        )
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if k.isupper()}
    try:
        model = schema.Model.GetRootAs(data, 0)
        codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
        ops = []
        for code in codes:
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            custom = code.CustomCode()
            ops.append(custom.decode() if custom else names.get(builtin, str(builtin)))
        n_subgraphs = model.SubgraphsLength()
        n_buffers = model.BuffersLength()
        _ = [model.Buffers(i).DataLength() for i in range(n_buffers)]
    except Exception as e:  # flatbuffers raises bare IndexError/struct.error
        raise ModelFileError(
            f"{source}: truncated or corrupt .tflite ({len(data)} bytes): "
            f"{type(e).__name__} while reading the flatbuffer"
        ) from None
    if n_subgraphs == 0:
        raise ModelFileError(f"{source}: .tflite holds no subgraph")
    custom = sorted({op for op in ops if op not in names.values()})
    if custom:
        flex = [op for op in custom if op.startswith("Flex")]
        kind = "Select-TF (Flex)" if flex else "custom"
        raise FlexOpsError(
            f"{source}: model needs {kind} ops {', '.join(custom)}; LiteRT here "
            "runs builtin ops only: convert with "
            "target_spec.supported_ops=[tf.lite.OpsSet.TFLITE_BUILTINS]"
        )
    return tuple(sorted(set(ops)))


def _info(details: dict[str, Any], name: str) -> TensorInfo:
    return TensorInfo(
        name=name,
        shape=tuple(int(d) for d in details["shape_signature"]),
        dtype=np.dtype(details["dtype"]),
    )


def signature_io(
    interpreter: Any, key: str
) -> tuple[dict[str, TensorInfo], dict[str, TensorInfo]]:
    """Inputs and outputs of one signature of a LiteRT interpreter, by name."""
    runner = interpreter.get_signature_runner(key)
    ins = {n: _info(d, n) for n, d in runner.get_input_details().items()}
    outs = {n: _info(d, n) for n, d in runner.get_output_details().items()}
    return ins, outs


def _require(ok: bool, source: str, what: str) -> None:
    if not ok:
        raise SignatureMismatchError(f"{source}: {what}")


def read_contract(interpreter: Any, source: str, ops: tuple[str, ...]) -> ModelContract:
    """Validate an interpreter's signatures against the client-model contract.

    Raises
    ------
    MissingSignatureError
        One of the four required signatures is absent.
    SignatureMismatchError
        An input/output is missing or has the wrong shape/dtype, or ``restore``
        does not mirror ``parameters``.
    """
    sigs = interpreter.get_signature_list()
    missing = [s for s in REQUIRED_SIGNATURES if s not in sigs]
    if missing:
        raise MissingSignatureError(
            f"{source}: missing signature(s) {', '.join(missing)}; a client model "
            f"needs {', '.join(REQUIRED_SIGNATURES)} "
            f"(has: {', '.join(sorted(sigs)) or 'none'})"
        )
    t_in, t_out = signature_io(interpreter, "train")
    i_in, i_out = signature_io(interpreter, "infer")
    p_in, p_out = signature_io(interpreter, "parameters")
    r_in, _ = signature_io(interpreter, "restore")

    noise_names = {n for n in t_in if _NOISE_NAME.match(n)}
    _require(
        {"x", "y"} <= set(t_in) <= {"x", "y", "mask"} | noise_names,
        source,
        f"train inputs are {sorted(t_in)}; expected x, y and optionally mask and "
        "noise0, noise1, ...",
    )
    _require(
        "loss" in t_out, source, f"train outputs are {sorted(t_out)}; expected loss"
    )
    _require(set(i_in) == {"x"}, source, f"infer inputs are {sorted(i_in)}; expected x")
    outs = [o for o in ("logits", "output") if o in i_out]
    _require(
        bool(outs),
        source,
        f"infer outputs are {sorted(i_out)}; expected logits or output",
    )
    _require(not p_in, source, f"parameters takes inputs {sorted(p_in)}; expected none")

    x, y, ix = t_in["x"], t_in["y"], i_in["x"]
    image_shape = x.shape[1:]
    _require(
        image_shape in _LAYOUTS and x.dtype == np.float32,
        source,
        f"train input {x}; expected float32 [B,28,28], [B,28,28,1] or [B,784]",
    )
    _require(
        ix.shape[1:] == image_shape and ix.dtype == np.float32,
        source,
        f"infer input {ix} does not match train input {x}",
    )
    logits = i_out[outs[0]]
    _require(
        len(logits.shape) == 2 and logits.shape[1] >= 2,
        source,
        f"infer output {logits}; expected [B,num_classes]",
    )
    num_classes = logits.shape[1]
    batch = x.shape[0]
    one_hot = y.dtype == np.float32 and y.shape == (batch, num_classes)
    ids = y.dtype in (np.int32, np.int64) and y.shape == (batch,)
    _require(
        one_hot or ids,
        source,
        f"train input {y}; expected one-hot float32[B,{num_classes}] or int32/int64[B] "
        f"with the same B as x ({batch})",
    )
    if "mask" in t_in:
        m = t_in["mask"]
        _require(
            m.shape == (batch,) and m.dtype == np.float32,
            source,
            f"train input {m}; expected float32[{batch}]",
        )

    noise = _noise_inputs([t_in[n] for n in noise_names], batch, source)
    params = _ordered_params(p_out, source, "parameters outputs")
    restore = _ordered_params(r_in, source, "restore inputs")
    for p, r in zip(params, restore, strict=False):
        _require(
            p.shape == r.shape and p.dtype == r.dtype,
            source,
            f"restore input {r} does not match parameters output {p}",
        )
    _require(
        [p.name for p in params] == [r.name for r in restore],
        source,
        f"restore inputs {[r.name for r in restore]} do not match parameters outputs "
        f"{[p.name for p in params]}",
    )
    if TRAIN_TAIL in sigs:
        tail = signature_io(interpreter, TRAIN_TAIL)
        _require(
            tail == (t_in, t_out),
            source,
            f"{TRAIN_TAIL} takes {sorted(tail[0].values(), key=str)} and returns "
            f"{sorted(tail[1].values(), key=str)}; expected train's "
            f"{sorted(t_in.values(), key=str)} and {sorted(t_out.values(), key=str)}",
        )
    if "set_correction" in sigs:
        c_in, _ = signature_io(interpreter, "set_correction")
        correction = _ordered_params(c_in, source, "set_correction inputs")
        _require(
            correction == params,
            source,
            "set_correction inputs do not match parameters outputs",
        )
    return ModelContract(
        source=source,
        image_shape=image_shape,
        num_classes=num_classes,
        one_hot_labels=one_hot,
        label_dtype=y.dtype,
        train_batch=batch if batch > 0 else None,
        infer_batch=ix.shape[0] if ix.shape[0] > 0 else None,
        has_mask="mask" in t_in,
        infer_output=outs[0],
        parameters=params,
        extra_signatures=tuple(sorted(set(sigs) - set(REQUIRED_SIGNATURES))),
        ops=ops,
        noise=noise,
    )


def _noise_inputs(
    tensors: list[TensorInfo], batch: int, source: str
) -> tuple[TensorInfo, ...]:
    ordered = sorted(tensors, key=lambda t: int(t.name[5:]))
    names = [t.name for t in ordered]
    _require(
        names == [f"noise{k}" for k in range(len(ordered))],
        source,
        f"train noise inputs {names} are not noise0, noise1, ... without gaps",
    )
    for t in ordered:
        _require(
            t.dtype == np.float32
            and len(t.shape) >= 2
            and t.shape[0] in (batch, 1)
            and all(d > 0 for d in t.shape[1:]),
            source,
            f"train input {t}; expected float32 with first dimension "
            f"{'None' if batch < 0 else batch} or 1 and fixed other dimensions",
        )
    return tuple(ordered)


def _ordered_params(
    tensors: dict[str, TensorInfo], source: str, what: str
) -> tuple[TensorInfo, ...]:
    bad = [n for n in tensors if not _PARAM_NAME.match(n)]
    _require(not bad, source, f"{what} {bad} are not named a0, a1, ...")
    _require(bool(tensors), source, f"{what}: none; a model needs at least one weight")
    ordered = sorted(tensors.values(), key=lambda t: int(t.name[1:]))
    dynamic = [str(t) for t in ordered if any(d < 0 for d in t.shape)]
    _require(not dynamic, source, f"{what} {dynamic} have dynamic shapes")
    return tuple(ordered)
