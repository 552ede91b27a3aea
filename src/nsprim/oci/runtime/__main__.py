"""``python -m nsprim.oci.runtime``: the same as ``nsprim-runtime``."""

import sys

from .cli import main

sys.exit(main())
