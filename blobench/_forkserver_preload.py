"""Imported once by the fork server that starts isolated cells (see blobench.runner).

Loading torch, the built-in plugin entries (some import scikit-learn) and the code version
here means each forked cell starts with them in memory instead of paying seconds to load them.
"""

from blobench.registry import get_registry
from blobench.version import engine_hash, git_describe

get_registry()
engine_hash()
git_describe()
