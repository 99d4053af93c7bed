"""Errors that reach the user as one line (exit code 2), not as a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input from the user: printed as one line by the CLI, exit code 2."""


class PluginError(UserError):
    """A problem or algorithm entry that violates the API."""


class NotApplicable(Exception):
    """Raised by an algorithm that cannot run on this problem *instance* (e.g. its size, known
    only once built): the cell is recorded with status ``not_applicable`` and its reason, and
    leaderboards list it apart from the ranked (and the failed) configurations."""


class DataMissing(NotApplicable):
    """A dataset a problem needs is not on this machine (see :mod:`blobench.toolkit.data`): a
    planned
    cell is recorded ``not_applicable`` with this message and the rest of the suite runs."""

    @classmethod
    def of(cls, dataset: str, looked: str = "") -> DataMissing:
        """The error for ``dataset``: "data missing: run `blobench data fetch <dataset>`"."""
        where = f" (looked in {looked})" if looked else ""
        return cls(f"data missing: run `blobench data fetch {dataset}`{where}")


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> UserError:
    """Error for an unknown ``name`` of ``kind``, listing the valid ones and a close match."""
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return UserError(f"unknown {kind} {name!r}{hint}; valid: {', '.join(valid) or '(none)'}")
