"""A restricted unpickler: plain data in, nothing run.

A pickle is a program: its opcodes may import any module and call any function
(``os.system`` included) while it loads. Python's ``pickle`` has no safe mode;
the documented way to restrict it is to override ``Unpickler.find_class``,
through which every opcode that reaches code goes (the ``pickle`` module
documentation, "Restricting Globals"). :class:`SafeUnpickler` refuses every
global, so a pickle loads only what has opcodes of its own (dicts, lists,
tuples, numbers, strings, bytes, ``None``, booleans), except three names that
plain numeric data needs, answered by checked stand-ins, never by the real
functions: numpy's numeric scalars (``numpy.dtype`` of a numeric type code and
``multiarray.scalar`` of its bytes, returned as Python numbers) and old
protocols' ``bytes`` (``_codecs.encode(text, "latin1")``).
"""

from __future__ import annotations

import io
import pickle
import re
from typing import Any, NoReturn

import numpy as np

from fedtflite.errors import DeviceFileError, UnsafePickleError

__all__ = ["SafeUnpickler", "safe_unpickle"]


def _printable(text: str, limit: int = 80) -> str:
    """``text`` on one line (a hostile pickle may name anything), shortened."""
    flat = text.encode("unicode_escape").decode("ascii")
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class _Refused(pickle.UnpicklingError):
    """A global (or persistent id) the pickle asked for; nothing was called."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


_NUMERIC_DTYPE = re.compile(r"[<>=|]?[biuf][1248]")


def _numpy_dtype(spec: Any, *_: Any) -> np.dtype[Any]:
    """``numpy.dtype`` for a numeric type code only (how numpy pickles a scalar's
    type: ``dtype("f8", False, True)``)."""
    if isinstance(spec, str) and _NUMERIC_DTYPE.fullmatch(spec):
        return np.dtype(spec)
    raise _Refused(_printable(f"numpy.dtype({spec!r})"))


def _numpy_scalar(dtype: Any, data: Any = b"") -> int | float:
    """A numpy number from its raw bytes, returned as a Python int or float."""
    if (
        isinstance(dtype, np.dtype)
        and dtype.kind in "biuf"
        and isinstance(data, bytes)
        and len(data) == dtype.itemsize
    ):
        value: int | float = np.frombuffer(data, dtype)[0].item()
        return value
    raise _Refused(_printable(f"numpy scalar of {dtype!r}"))


def _latin1(text: Any, encoding: Any = "latin1") -> bytes:
    """``_codecs.encode(text, "latin1")``: how protocols 0-2 pickle ``bytes``."""
    if isinstance(text, str) and encoding in ("latin1", "latin-1"):
        return text.encode("latin1")
    raise _Refused(_printable(f"_codecs.encode(..., {encoding!r})"))


# numpy numbers (np.float64(162.0) in a trace) pickle as a call to the first
# two, bytes in old protocols as the third; they are answered by the checked
# stand-ins above, never by the real functions.
_ALLOWED_GLOBALS = {
    ("numpy", "dtype"): _numpy_dtype,
    ("_codecs", "encode"): _latin1,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that builds plain data only; any other global is refused.

    Dicts, lists, tuples, ``int``, ``float``, ``bool``, ``None``, ``str`` and
    ``bytes`` have opcodes of their own; everything else (a class, a function,
    ``os.system``, a numpy array) is named through :meth:`find_class`, which
    refuses it here, so nothing in the file runs. The exceptions are numpy's
    numeric scalars (``numpy.dtype`` of a numeric type code and
    ``multiarray.scalar`` of its bytes) and old protocols' ``bytes``
    (``_codecs.encode(text, "latin1")``), answered by checked stand-ins.
    """

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise _Refused(_printable(f"{module}.{name}"))
        return allowed

    def persistent_load(self, pid: Any) -> NoReturn:
        raise _Refused(_printable(f"persistent id {pid!r}"))


def safe_unpickle(data: bytes, source: str) -> Any:
    """Unpickle plain data (see :class:`SafeUnpickler`).

    Raises
    ------
    UnsafePickleError
        The pickle names a class or function (nothing of it has run).
    DeviceFileError
        Not a readable pickle.
    """
    try:
        return SafeUnpickler(io.BytesIO(data)).load()
    except _Refused as e:
        raise UnsafePickleError(
            f"{source}: refused: the pickle asks for {e.what}; only dicts, lists, "
            "numbers and strings are loaded (a pickle is a program)"
        ) from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        AttributeError,
        MemoryError,
        RecursionError,
    ) as e:
        why = f"{type(e).__name__}: {_printable(str(e))}"
        raise DeviceFileError(f"{source}: not a readable pickle ({why})") from None
