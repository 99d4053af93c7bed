"""``python -m blobench`` — the same as the ``blobench`` command."""

import sys

from blobench.cli import main

sys.exit(main())
