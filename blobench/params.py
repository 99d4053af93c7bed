"""Typed, validated hyperparameters shared by problems and algorithms.

An entry declares ``params = {"name": Param(type, default, ...)}``; :func:`resolve`
turns user-given values (possibly strings from the command line) into a complete,
validated dict, or raises a one-line :class:`~blobench.errors.UserError` saying which
parameter is wrong and why.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from blobench.errors import UserError, unknown_name

_TYPE_NAMES = {int: "int", float: "float", bool: "bool", str: "str"}


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
