"""Typed, validated hyperparameters shared by problems and algorithms.

An entry declares ``params = {"name": Param(type, default, ...)}``; :func:`resolve`
turns user-given values (possibly strings from the command line) into a complete,
validated dict, or raises a one-line :class:`~blobench.contracts.errors.UserError` saying which
parameter is wrong and why.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from blobench.contracts.errors import UserError, unknown_name

#: keyword arguments of :class:`Param` for a strictly positive number (``low=0``, open)
POSITIVE: dict[str, Any] = {"low": 0.0, "low_open": True}

_TYPE_NAMES = {int: "int", float: "float", bool: "bool", str: "str"}

#: the floating-point precisions a problem may run in (see :func:`dtype_param`)
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its type, default, bounds and meaning.

    ``low``/``high`` are inclusive unless ``low_open``/``high_open``; ``choices`` restricts
    to a set; ``optional`` admits ``None`` (meaning "let the problem decide", e.g. a step
    size of ``1/L``); ``check`` is an extra predicate with its message.
    """

    type: type
    default: Any
    help: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: Sequence[Any] | None = None
    optional: bool = False
    check: tuple[Callable[[Any], bool], str] | None = field(default=None, compare=False)

    def describe(self) -> str:
        """Short text for ``blobench list``: type, default, range."""
        kind = _TYPE_NAMES.get(self.type, self.type.__name__)
        if self.optional:
            kind += "|None"
        parts = [f"{kind}={self.default!r}"]
        if self.choices is not None:
            parts.append("in {" + ", ".join(map(str, self.choices)) + "}")
        if self.low is not None or self.high is not None:
            lo = "(" if self.low_open else "["
            hi = ")" if self.high_open else "]"
            parts.append(f"{lo}{'-inf' if self.low is None else self.low}, "
                         f"{'inf' if self.high is None else self.high}{hi}")
        return " ".join(parts)

    def coerce(self, name: str, value: Any) -> Any:
        """Convert ``value`` to this parameter's type and validate it."""
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            if self.optional:
                return None
            raise UserError(f"hyperparameter {name!r} may not be None")
        value = _convert(name, self.type, value)
        if self.choices is not None and value not in self.choices:
            raise UserError(f"hyperparameter {name}={value!r} is not one of "
                            f"{', '.join(map(repr, self.choices))}")
        if self.type in (int, float):
            if isinstance(value, float) and not math.isfinite(value):
                raise UserError(f"hyperparameter {name}={value!r} must be finite")
            if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
                op = ">" if self.low_open else ">="
                raise UserError(f"hyperparameter {name}={value!r} must be {op} {self.low}")
            if self.high is not None and (value > self.high
                                          or (self.high_open and value == self.high)):
                op = "<" if self.high_open else "<="
                raise UserError(f"hyperparameter {name}={value!r} must be {op} {self.high}")
        if self.check is not None and not self.check[0](value):
            raise UserError(f"hyperparameter {name}={value!r}: {self.check[1]}")
        return value


def dtype_param(default: str = "float64") -> Param:
    """The ``dtype`` parameter of a problem: ``float32`` or ``float64`` (see :data:`DTYPES`).

    Shared convention: ``full`` sizes of paper-scale problems default to ``float32`` (the
    field's default, e.g. benchopt's bilevel benchmark); tests needing precision pass
    ``dtype="float64"``. Turn the string into a torch dtype with :func:`torch_dtype`.
    """
    if default not in DTYPES:
        raise ValueError(f"dtype_param default must be one of {DTYPES}, got {default!r}")
    return Param(str, default, "floating-point precision of the problem's tensors",
                 choices=DTYPES)


def torch_dtype(name: str) -> Any:
    """``"float32"``/``"float64"`` → ``torch.float32``/``torch.float64``."""
    import torch

    if name not in DTYPES:
        raise UserError(f"dtype {name!r} is not one of {', '.join(DTYPES)}")
    return getattr(torch, name)


def _convert(name: str, typ: type, value: Any) -> Any:
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
    elif typ is int:
        if isinstance(value, bool):
            pass
        elif isinstance(value, int):
            return value
        elif isinstance(value, float) and value.is_integer():
            return int(value)
        elif isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif typ is str:
        return str(value)
    else:
        return typ(value)
    raise UserError(f"hyperparameter {name}={value!r} is not a valid "
                    f"{_TYPE_NAMES.get(typ, typ.__name__)}")


def resolve(owner: str, params: Mapping[str, Param], given: Mapping[str, Any]) -> dict[str, Any]:
    """Complete ``given`` with defaults and validate every value; ``owner`` names the entry."""
    for key in given:
        if key not in params:
            err = unknown_name(f"hyperparameter of {owner}", key, params)
            raise UserError(str(err))
    out = {}
    for key, spec in params.items():
        try:
            out[key] = spec.coerce(key, given[key]) if key in given else spec.default
        except UserError as exc:
            raise UserError(f"{owner}: {exc}") from None
    return out


# ------------------------------------------------------------------ search spaces (tuning)
#: what a relative step size multiplies: the problem's ``outer_step_size()`` or
#: ``inner_step_size(λ₀)`` (``1/L``), read off the problem instance being tuned
RELATIVE_TO = ("outer", "inner")


def _round(value: float) -> float:
    """Three significant digits, so tuned values read well in labels."""
    return float(f"{value:.3g}")


@dataclass(frozen=True)
class LogUniform:
    """``n`` values log-spaced from ``low`` to ``high`` (both included) for a grid search.

    With ``relative`` ("outer" or "inner") the values are multiples of the problem's default
    step size (see :data:`RELATIVE_TO`); the tuned setting stores the absolute values.
    """

    low: float
    high: float
    n: int = 4
    relative: str | None = None

    def __post_init__(self) -> None:
        if not 0 < self.low <= self.high or self.n < 1:
            raise ValueError(f"LogUniform needs 0 < low <= high and n >= 1, got {self}")
        if self.relative is not None and self.relative not in RELATIVE_TO:
            raise ValueError(f"LogUniform.relative must be one of {RELATIVE_TO}")

    def grid(self, scale: float = 1.0) -> list[float]:
        if self.n == 1:
            return [_round(self.low * scale)]
        ratio = (self.high / self.low) ** (1.0 / (self.n - 1))
        return [_round(self.low * ratio ** i * scale) for i in range(self.n)]

    def describe(self) -> dict[str, Any]:
        return {"kind": "log_uniform", "low": self.low, "high": self.high, "n": self.n,
                "relative": self.relative}


@dataclass(frozen=True)
class IntRange:
    """``n`` integers from ``low`` to ``high`` (both included), log-spaced if ``log``."""

    low: int
    high: int
    n: int = 3
    log: bool = False

    def __post_init__(self) -> None:
        if self.low > self.high or self.n < 1 or (self.log and self.low < 1):
            raise ValueError(f"IntRange needs low <= high, n >= 1 (low >= 1 if log): {self}")

    def grid(self, scale: float = 1.0) -> list[int]:
        if self.n == 1 or self.low == self.high:
            return [self.low]
        if self.log:
            ratio = (self.high / self.low) ** (1.0 / (self.n - 1))
            values = [round(self.low * ratio ** i) for i in range(self.n)]
        else:
            step = (self.high - self.low) / (self.n - 1)
            values = [round(self.low + step * i) for i in range(self.n)]
        return sorted(set(values))

    def describe(self) -> dict[str, Any]:
        return {"kind": "int_range", "low": self.low, "high": self.high, "n": self.n,
                "log": self.log}


@dataclass(frozen=True)
class Choice:
    """An explicit list of values."""

    values: tuple[Any, ...]

    def __init__(self, values: Sequence[Any]) -> None:
        if not values:
            raise ValueError("Choice needs at least one value")
        object.__setattr__(self, "values", tuple(values))

    def grid(self, scale: float = 1.0) -> list[Any]:
        return list(self.values)

    def describe(self) -> dict[str, Any]:
        return {"kind": "choice", "values": list(self.values)}


SearchDim = LogUniform | IntRange | Choice
