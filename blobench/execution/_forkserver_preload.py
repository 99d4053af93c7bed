"""Imported once by the fork server that starts isolated cells (see blobench.execution.runner).

Loading torch, the built-in plugin entries and the code version here means each forked cell
starts with them in memory instead of paying seconds to load them. The modules a cell imports
lazily on first use are loaded here too (measured: without them the first step of every cell
paid 1–1.5 s): ``torch._dynamo`` (entered by the memory probe's dispatch mode) and the
profiler. Not scikit-learn: the digits and breast-cancer problems read its bundled files with
numpy (blobench/toolkit/datasets.py), and importing it here (it brings scipy and pandas) cost
the server ~2.5 CPU-s and ~110 MiB (measured 4.7–5.4 → 2.4–2.7 CPU-s, 424 → 292 MiB resident;
issue 15); only the full-size svmlight files import it, in their cells. Nothing here starts
a thread or runs torch code: the server only imports, so a forked child inherits no thread
pool.
"""

import importlib

from blobench.execution.registry import get_registry
from blobench.execution.version import engine_hash, git_describe

get_registry()
engine_hash()
git_describe()
for _module in ("torch._dynamo", "torch.profiler"):
    try:
        importlib.import_module(_module)
    except ImportError:  # optional: a cell that needs it imports it (and reports if missing)
        pass
