"""Peak memory of the algorithm alone (design.md, Harness), measured two ways.

**Process peak** (:class:`PeakMemory`, wrapped around every timed ``step``; no overhead):

- CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus what was
  allocated at the start (method ``"cuda_max_allocated"``).
- CPU (Linux): writing ``5`` to ``/proc/self/clear_refs`` resets the peak resident set size
  ``VmHWM`` to the current RSS; the peak over a region minus the RSS at the start is what the
  region added (method ``"rss_hwm"``). Elsewhere the CPU figure is unavailable (None).
  The peak is read with ``getrusage`` (``ru_maxrss``, the same high-water mark, ~1 µs) when
  :meth:`PeakMemory.start` finds that it follows the reset, else from ``/proc/self/status``
  (~50 µs). The reset (~50 µs: the kernel walks the page tables) is skipped when nothing
  between two regions (an evaluation) raised the mark above what was already counted — the
  peak read at the next exit is then still the peak of the measured regions alone.

Before the first measurement in a process, :func:`warm_up` runs the kinds of operation an
algorithm uses (autograd, double backward, linear algebra) once, so that the lazy
initialization of libraries (tens of MiB the first time) is not charged to the first cell.
RSS still only sees memory the allocator asks from the OS: freed blocks are reused, so for
small problems the growth of a computation graph can stay invisible in it — and in a worker
that ran cells before (:mod:`blobench.execution.isolation`; it gives freed pages back with
``malloc_trim`` between cells) a few MiB of first-use allocations that a fresh process
charges to its first cell are not seen again (measured: sparse_ho × unrolled 6.0 MiB fresh,
1.0 MiB in a reused worker; 45 vs 46 MiB on reweight_digits × implicit_cg). The live-tensor
peak below does not depend on the process's history.

**Live tensor bytes** (:func:`step_tensor_peak`, method ``"torch_live_tensors"``): one outer
step is replayed on a deep copy of the state, outside the timed region, under a
``TorchDispatchMode`` that adds the bytes of every storage an operator creates and subtracts
them when the last tensor viewing it is freed; ``saved_tensors_hooks`` keep the tensors saved
for backward referenced while the graph lives, so an unrolled graph is counted until it is
released. The peak of that running sum is the memory the step's tensors need — it grows
linearly with the unroll length T for reverse-mode unrolling and does not for implicit
methods, on any device and for any problem size. Allocator-internal workspace is not seen.
"""

from __future__ import annotations

import contextlib
import copy
import weakref
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_warmed_up = False


def _read_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _maxrss_kib() -> int:
    """Peak resident set size of this process (KiB on Linux), the VmHWM that clear_refs resets."""
    import resource  # POSIX only; the CPU probe is Linux-only anyway

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def warm_up(device: torch.device | str = "cpu") -> None:
    """Run autograd, double backward and linear algebra once (first call per process only)."""
    global _warmed_up
    if _warmed_up:
        return
    _warmed_up = True
    device = torch.device(device)
    for dtype in (torch.float32, torch.float64):
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(64, 64, generator=gen, dtype=dtype).to(device)
        x = torch.randn(64, generator=gen, dtype=dtype).to(device).requires_grad_(True)
        lam = torch.zeros(64, dtype=dtype, device=device, requires_grad=True)
        with torch.enable_grad():
            loss = 0.5 * ((a @ x - 1.0) ** 2).mean() + (lam.exp() * x**2).sum()
            (g,) = torch.autograd.grad(loss, x, create_graph=True)
            torch.autograd.grad(g, (x, lam), torch.ones_like(g), retain_graph=True)
            torch.autograd.grad(g, x, torch.eye(64, dtype=dtype, device=device),
                                is_grads_batched=True)
        spd = a @ a.T + torch.eye(64, dtype=dtype, device=device)
        torch.linalg.solve(spd, x.detach())
        torch.linalg.eigvalsh(spd)
        torch.linalg.pinv(spd)
        torch.linalg.qr(a)
        torch.nn.functional.cross_entropy(a[:, :10], torch.zeros(64, dtype=torch.long,
                                                                 device=device))
        torch.logsumexp(a, dim=1)
        for make in (torch.optim.SGD, torch.optim.Adam):  # first step imports lazily
            p = torch.zeros(3, dtype=dtype, device=device, requires_grad=True)
            opt = make([p], lr=0.1)
            p.grad = torch.ones_like(p)
            opt.step()
        torch.func.vmap(torch.func.grad(lambda v: (v**2).sum()))(a[:2])
    if device.type == "cuda":
        torch.cuda.synchronize()


class PeakMemory:
    """Tracks the peak memory added by the measured regions, in MiB.

    Use :meth:`start` once, then wrap each measured region with :meth:`enter` / :meth:`exit`
    (evaluation between regions is not counted). :attr:`method` names what is measured.
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device
        self.baseline = 0
        self.peak_bytes = 0
        self.available = True
        self._rusage = False
        self._seen_kib: int | None = None  # high-water mark already counted (KiB)
        self.method = "cuda_max_allocated" if self.cuda else "rss_hwm"

    def start(self) -> None:
        warm_up(self.device)
        if self.cuda:
            torch.cuda.synchronize()
            self.baseline = torch.cuda.memory_allocated()
        else:
            self.available = _CLEAR_REFS.exists()
            if self.available:
                self.enter()  # the high-water mark is now the current RSS: the baseline
            hwm = _read_kib("VmHWM") if self.available else None
            if hwm is None:
                self.available, self.method = False, None
                return
            self.baseline = hwm * 1024
            # ru_maxrss also keeps the peak of exited threads, which the reset does not clear:
            # use it only if it agrees with the reset high-water mark now
            self._rusage = _maxrss_kib() <= hwm
            self._seen_kib = hwm if self._rusage else None

    def enter(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        elif self.available:
            if self._rusage and self._seen_kib is not None and _maxrss_kib() <= self._seen_kib:
                return  # nothing since the last region raised the high-water mark: no reset
            try:
                _CLEAR_REFS.write_text("5")
            except OSError:
                self.available = False
                self.method = None

    def exit(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        elif self.available:
            peak_kib = _maxrss_kib() if self._rusage else _read_kib("VmHWM") or 0
            self._seen_kib = peak_kib
            peak = peak_kib * 1024
        else:
            return
        self.peak_bytes = max(self.peak_bytes, peak - self.baseline)

    @property
    def peak_mib(self) -> float | None:
        if not self.available:
            return None
        return max(self.peak_bytes, 0) / 2**20


# ------------------------------------------------------------------ live tensor bytes
class _Saved:
    """What the saved-tensor hook stores: keeps the tensor (and so its counted bytes) alive."""

    __slots__ = ("tensor",)

    def __init__(self, tensor: torch.Tensor):
        # a detached alias: same storage (still counted), but no grad_fn, so an op's saved
        # *output* does not form a cycle output → node → this object → output, which
        # Python's collector cannot break (the node is a C++ object). Autograd re-attaches the
        # history from its own metadata on unpack, so gradients are unchanged.
        self.tensor = tensor.detach()


class LiveTensorBytes(TorchDispatchMode):
    """Running sum and peak of the bytes of storages created inside the mode."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, list[int]] = {}  # data_ptr -> [bytes, tensors alive]
        #: one weak reference per tracked tensor until it dies, by id (a weak reference to a
        #: tensor hashes and compares through the tensor, which is ambiguous)
        self._refs: dict[int, weakref.ref] = {}
        self.current = 0
        self.peak = 0

    def _release(self, ptr: int) -> None:
        entry = self.live.get(ptr)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            self.current -= entry[0]
            del self.live[ptr]

    def _track(self, tensor: torch.Tensor, inputs: set[int]) -> None:
        try:
            storage = tensor.untyped_storage()
            ptr = storage.data_ptr()
        except (RuntimeError, NotImplementedError):
            return
        if ptr == 0:
            return
        entry = self.live.get(ptr)
        if entry is None:
            if ptr in inputs:  # in-place op or view of a tensor made before the probe
                return
            entry = self.live[ptr] = [storage.nbytes(), 0]
            self.current += entry[0]
            self.peak = max(self.peak, self.current)
        entry[1] += 1
        # a weak reference with a callback (kept alive in a dict) costs a fraction of a
        # weakref.finalize, which registers itself in a global atexit-aware registry
        ref = weakref.ref(tensor, lambda ref, ptr=ptr: self._dropped(ref, ptr))
        self._refs[id(ref)] = ref

    def _dropped(self, ref: weakref.ref, ptr: int) -> None:
        self._refs.pop(id(ref), None)
        self._release(ptr)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None
                           ) -> Any:
        out = func(*args, **(kwargs or {}))
        inputs = set()
        for t in _tensors((args, kwargs)):
            try:
                inputs.add(t.untyped_storage().data_ptr())
            except (RuntimeError, NotImplementedError):
                pass
        for t in _tensors(out):
            self._track(t, inputs)
        return out


def _tensors(obj: Any) -> list[torch.Tensor]:
    """The tensors in an op's arguments or outputs (nested tuples, lists, dicts).

    A direct walk of the containers aten ops use: :func:`torch.utils._pytree.tree_flatten`
    handles every registered container type and cost half of the probe's time (issue 15)."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if not isinstance(obj, (tuple, list, dict)):
        return []
    found: list[torch.Tensor] = []
    stack = [obj]
    while stack:
        item = stack.pop()
        for x in item.values() if isinstance(item, dict) else item:
            if isinstance(x, torch.Tensor):
                found.append(x)
            elif isinstance(x, (tuple, list, dict)):
                stack.append(x)
    return found


def step_tensor_peak(algorithm: Any, problem: Any, state: Any) -> float:
    """Peak live tensor MiB of one ``algorithm.step`` replayed on a deep copy of ``state``.

    The state itself, its random generators and the oracle counters are left untouched.
    Tensors saved for backward are kept counted through saved-tensor hooks; ``torch.func``
    transforms refuse those hooks, so for such steps the count falls back to the storages
    alone (which may miss tensors the graph keeps after their Python objects are gone).
    """
    from blobench import autodiff

    saved = autodiff.oracle_counts.copy()
    try:
        try:
            return _replay_peak(algorithm, problem, state, hooks=True)
        except RuntimeError as exc:
            if "saved tensor hooks" not in str(exc):
                raise
            return _replay_peak(algorithm, problem, state, hooks=False)
    finally:
        autodiff.oracle_counts.clear()
        autodiff.oracle_counts.update(saved)


def _replay_peak(algorithm: Any, problem: Any, state: Any, hooks: bool) -> float:
    replica = copy.deepcopy(state)
    mode = LiveTensorBytes()
    keep = (torch.autograd.graph.saved_tensors_hooks(_Saved, lambda s: s.tensor) if hooks
            else contextlib.nullcontext())
    with keep, mode:
        result = algorithm.step(problem, replica)
    del result
    return mode.peak / 2**20
