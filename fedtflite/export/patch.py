"""Give a trainable `.tflite` new initial weights by patching its flatbuffer.

A model converted with resource variables initializes them in its session
initializer subgraph: one ``ASSIGN_VARIABLE`` per variable, whose value is a
constant tensor with its own buffer. The ``parameters`` signature reads the
same variables (``VAR_HANDLE`` → ``READ_VARIABLE`` → output ``a<i>``), and a
``VAR_HANDLE``'s ``shared_name`` names the variable everywhere. So the initial
value of parameter ``a<i>`` is the constant assigned, in the initializer, to the
variable ``parameters`` reads for ``a<i>``; replacing those constants changes
nothing else in the file (every signature, the optimizer state's zeros, the
learning rate stay as they were). This needs no TensorFlow and works for any
`.tflite` built this way, including a user's.

The patched constants get tensors and buffers of their own (a converter shares
one constant, or one buffer, between equal initial values, e.g. two zero biases
or a zero bias and a zero momentum slot), so the model is re-serialized with LiteRT's
flatbuffer schema; buffer data keeps the 16-byte alignment the converter gives it.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from fedtflite.errors import ModelFileError, WeightsMismatchError

__all__ = ["with_initial_weights"]

_ALIGN = 16  # LiteRT's converter aligns buffer data to 16 bytes


def with_initial_weights(
    model: bytes, weights: Sequence[np.ndarray], source: str = "<bytes>"
) -> bytes:
    """``model`` with ``weights`` as the initial value of ``a0, a1, ...``.

    Parameters
    ----------
    model : bytes
        A trainable `.tflite` whose ``parameters`` signature reads resource
        variables initialized by constants (every model fedtflite builds; any
        model converted with ``experimental_enable_resource_variables``).
    weights : sequence of np.ndarray
        One array per ``parameters`` output, in order ``a0, a1, ...``, each of
        its shape and dtype.
    source : str
        Name for messages.

    Returns
    -------
    bytes
        The new model file; only the initial values of the parameters differ.

    Raises
    ------
    WeightsMismatchError
        Wrong count, shape or dtype.
    ModelFileError
        A model whose parameters are not initialized by constants (then no
        patch can set them; say which parameter).
    """
    m = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    if any(b.offset > 1 for b in m.buffers or []):
        raise ModelFileError(
            f"{source}: keeps its weights outside the flatbuffer (a model over "
            "2 GB); such files cannot be patched here"
        )
    targets = _initial_value_tensors(m, source)
    if len(weights) != len(targets):
        raise WeightsMismatchError(
            f"{source}: got {len(weights)} arrays; the model's parameters signature "
            f"has {len(targets)} outputs (a0..a{len(targets) - 1})"
        )
    init = m.subgraphs[_initializer(m, source)]
    users = Counter(t.buffer for g in m.subgraphs for t in g.tensors or [])
    readers = Counter(int(t) for op in init.operators or [] for t in op.inputs)
    for i, (assign, w) in enumerate(zip(targets, weights, strict=True)):
        tensor = init.tensors[assign.inputs[1]]
        shape = tuple(
            int(d) for d in (tensor.shape if tensor.shape is not None else ())
        )
        dtype = np.dtype(_DTYPES.get(tensor.type, "V"))
        w = np.asarray(w)
        if w.shape != shape or w.dtype != dtype:
            raise WeightsMismatchError(
                f"{source}: a{i} got {w.dtype.name}{list(w.shape)}; the model's a{i} "
                f"is {dtype.name}{list(shape)}"
            )
        if readers[int(assign.inputs[1])] > 1:  # one constant, several variables
            readers[int(assign.inputs[1])] -= 1
            tensor = copy.copy(tensor)
            users[tensor.buffer] += 1
            assign.inputs[1] = len(init.tensors)
            init.tensors.append(tensor)
        data = np.frombuffer(w.astype(dtype.newbyteorder("<")).tobytes(), np.uint8)
        if users[tensor.buffer] == 1:  # its own buffer: overwrite it
            m.buffers[tensor.buffer].data = data
        else:  # shared with an equal constant (a zero slot...): a buffer of its own
            users[tensor.buffer] -= 1
            buffer = schema.BufferT()
            buffer.data = data
            tensor.buffer = len(m.buffers)
            m.buffers.append(buffer)
    return _pack(m)


_DTYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 9: "int8"}


def _initializer(m: Any, source: str) -> int:
    for sig in m.signatureDefs or []:
        if sig.signatureKey == b"__tflite_initialize_session":  # pragma: no cover
            return int(sig.subgraphIndex)
    # The converter names it after the saved model's initializer op (``NoOp``)
    # and calls it through CALL_ONCE from every signature.
    for g in m.subgraphs:
        for op in g.operators or []:
            if _opname(m, op) == "CALL_ONCE":
                return int(op.builtinOptions.initSubgraphIndex)
    raise ModelFileError(
        f"{source}: has no session initializer (CALL_ONCE); its weights are not "
        "resource variables with initial values, so they cannot be patched"
    )


_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if k.isupper()}


def _opname(m: Any, op: Any) -> str:
    code = m.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    return str(_OP_NAMES.get(builtin, builtin))


def _handles(m: Any, g: Any) -> dict[int, bytes]:
    """Tensor index -> variable shared name, for every VAR_HANDLE output of ``g``."""
    out = {}
    for op in g.operators or []:
        if _opname(m, op) == "VAR_HANDLE":
            out[int(op.outputs[0])] = bytes(op.builtinOptions.sharedName or b"")
    return out


def _initial_value_tensors(m: Any, source: str) -> list[Any]:
    """The ``ASSIGN_VARIABLE`` op that gives each parameter its initial constant."""
    sig = next(
        (s for s in m.signatureDefs or [] if s.signatureKey == b"parameters"), None
    )
    if sig is None:
        raise ModelFileError(f"{source}: has no parameters signature")
    g = m.subgraphs[sig.subgraphIndex]
    handles = _handles(m, g)
    read = {
        int(op.outputs[0]): handles.get(int(op.inputs[0]))
        for op in g.operators or []
        if _opname(m, op) == "READ_VARIABLE"
    }
    outputs = {t.name.decode(): int(t.tensorIndex) for t in sig.outputs}
    names = sorted(
        (n for n in outputs if n[:1] == "a" and n[1:].isdigit()),
        key=lambda n: int(n[1:]),
    )
    init_index = _initializer(m, source)
    init = m.subgraphs[init_index]
    init_handles = _handles(m, init)
    assigned = {
        init_handles.get(int(op.inputs[0])): op
        for op in init.operators or []
        if _opname(m, op) == "ASSIGN_VARIABLE"
    }
    produced = {int(t) for op in init.operators or [] for t in op.outputs}
    targets = []
    for name in names:
        variable = read.get(outputs[name])
        assign = assigned.get(variable) if variable is not None else None
        value = -1 if assign is None else int(assign.inputs[1])
        if value < 0 or value in produced or init.tensors[value].buffer == 0:
            raise ModelFileError(
                f"{source}: parameters output {name} is not a resource variable "
                "with a constant initial value; only such models can be patched "
                "(convert with experimental_enable_resource_variables)"
            )
        targets.append(assign)
    return targets


def _pack(m: Any) -> bytes:
    import flatbuffers  # type: ignore[import-untyped]

    for b in m.buffers:  # pack every buffer's data 16-byte aligned
        b.__class__ = _AlignedBuffer
    builder = flatbuffers.Builder(1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


class _AlignedBuffer(schema.BufferT):  # type: ignore[misc]  # untyped schema
    """A buffer that packs its data 16-byte aligned (the schema's ``force_align``,
    which the generated Python ignores)."""

    def Pack(self, builder: Any) -> Any:  # noqa: N802 - the schema's name
        data = None
        if self.data is not None and len(self.data):
            payload = np.asarray(self.data, np.uint8).tobytes()
            builder.StartVector(1, len(payload), _ALIGN)
            builder.head -= len(payload)
            builder.Bytes[builder.head : builder.head + len(payload)] = payload
            builder.vectorNumElems = len(payload)
            data = builder.EndVector()
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        schema.BufferAddOffset(builder, self.offset)
        schema.BufferAddSize(builder, self.size)
        return schema.BufferEnd(builder)
