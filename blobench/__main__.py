"""``python -m blobench`` — the same as the ``blobench`` command."""

import sys

from blobench.cli import main

if __name__ == "__main__":  # guarded: cell processes re-import the main module
    sys.exit(main())
