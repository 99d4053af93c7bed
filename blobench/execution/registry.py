"""Discovery of problem and algorithm entries: plugin folders and installed packages.

An entry is a concrete subclass of :class:`~blobench.contracts.problem.Problem` or
:class:`~blobench.bases.algorithm.Algorithm` with a non-empty ``name``, defined in a ``.py`` file of
a plugin folder — the repository's ``problems/`` and ``algorithms/``, any folder given with
``--plugins`` — or in a module named by an entry point of the ``blobench.problems`` /
``blobench.algorithms`` groups. Adding an entry is adding a file: there is no central list.

A file that fails to import — an exception, or ``sys.exit()`` at import — is recorded in
:attr:`Registry.errors` (file and message) and the other files still load. Loading a plugin
folder **executes its code** (it is imported): only load folders you trust.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from blobench.bases.algorithm import Algorithm
from blobench.contracts.errors import UserError, unknown_name
from blobench.contracts.problem import Problem

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILTIN_FOLDERS = (REPO_ROOT / "problems", REPO_ROOT / "algorithms")


class Registry:
    """Problems and algorithms found in the given folders and entry points."""

    def __init__(self, folders: Iterable[Path | str] = (), entry_point_groups: bool = True):
        self.problems: dict[str, type[Problem]] = {}
        self.algorithms: dict[str, type[Algorithm]] = {}
        self.files: dict[str, Path] = {}  # "problem:name" / "algorithm:name" -> source file
        self.errors: list[tuple[str, str]] = []
        self.folders = [Path(f).resolve() for f in (*BUILTIN_FOLDERS, *folders)]
        for folder in self.folders:
            self._load_folder(folder)
        if entry_point_groups:
            self._load_entry_points()

    # ---------------------------------------------------------------- discovery
    def _load_folder(self, folder: Path) -> None:
        if not folder.is_dir():
            if folder not in BUILTIN_FOLDERS:
                raise UserError(f"plugin folder {str(folder)!r} does not exist")
            return
        tag = hashlib.sha1(str(folder).encode()).hexdigest()[:8]
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_"):
                continue
            modname = f"blobench_plugins.{folder.name}_{tag}.{path.stem}"
            try:
                module = sys.modules.get(modname) or _import_file(modname, path)
            except (Exception, SystemExit) as exc:
                # a plugin is code run at import: its sys.exit() costs that file only, never
                # the command (a user's Ctrl-C still stops the command)
                self.errors.append((str(path), _one_line(exc)))
                continue
            self._collect(module, path)

    def _load_entry_points(self) -> None:
        for group in ("blobench.problems", "blobench.algorithms"):
            for ep in entry_points(group=group):
                try:
                    obj = ep.load()
                except (Exception, SystemExit) as exc:
                    self.errors.append((f"entry point {ep.name} ({ep.value})", _one_line(exc)))
                    continue
                if inspect.ismodule(obj):
                    self._collect(obj, Path(getattr(obj, "__file__", ep.value)))
                elif inspect.isclass(obj):
                    self._add(obj, Path(inspect.getfile(obj)))

    def _collect(self, module: ModuleType, path: Path) -> None:
        for obj in vars(module).values():
            if inspect.isclass(obj) and obj.__module__ == module.__name__:
                self._add(obj, path)

    def _add(self, cls: type, path: Path) -> None:
        if inspect.isabstract(cls) or not getattr(cls, "name", ""):
            return
        if issubclass(cls, Problem):
            table, kind = self.problems, "problem"
        elif issubclass(cls, Algorithm):
            table, kind = self.algorithms, "algorithm"
        else:
            return
        key = f"{kind}:{cls.name}"
        if cls.name in table and table[cls.name] is not cls:
            self.errors.append((str(path), f"{kind} {cls.name!r} is already defined in "
                                           f"{self.files[key]}; this one is ignored"))
            return
        missing = [s for s in ("quick", "full") if kind == "problem" and s not in cls.sizes]
        if missing:
            self.errors.append((str(path), f"problem {cls.name!r} lacks sizes {missing}"))
            return
        table[cls.name] = cls
        self.files[key] = path

    # ------------------------------------------------------------------ lookups
    def problem(self, name: str) -> type[Problem]:
        if name not in self.problems:
            raise unknown_name("problem", name, self.problems)
        return self.problems[name]

    def algorithm(self, name: str) -> type[Algorithm]:
        if name not in self.algorithms:
            raise unknown_name("algorithm", name, self.algorithms)
        return self.algorithms[name]

    def source_file(self, kind: str, name: str) -> Path:
        return self.files[f"{kind}:{name}"]


def _import_file(modname: str, path: Path) -> ModuleType:
    parent = modname.rsplit(".", 1)[0]
    for pkg in ("blobench_plugins", parent):
        if pkg not in sys.modules:
            mod = ModuleType(pkg)
            mod.__path__ = []  # a namespace for the dynamically loaded plugin modules
            sys.modules[pkg] = mod
    spec = importlib.util.spec_from_file_location(modname, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[modname]
        raise
    return module


def _one_line(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (line {last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}".replace("\n", " ")


def summary_line(cls: type) -> str:
    """First line of an entry's own docstring, else of its module's docstring."""
    doc = cls.__dict__.get("__doc__") or getattr(sys.modules.get(cls.__module__), "__doc__", "")
    return (doc or "").strip().splitlines()[0] if (doc or "").strip() else ""


_CACHE: dict[tuple[str, ...], Registry] = {}


def get_registry(plugins: Iterable[Path | str] = ()) -> Registry:
    """The registry for these extra plugin folders (cached per process)."""
    key = tuple(str(Path(p).resolve()) for p in plugins)
    if key not in _CACHE:
        _CACHE[key] = Registry(key)
    return _CACHE[key]
