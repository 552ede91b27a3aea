#!/usr/bin/env python3
"""Run a command in a QEMU VM booted in pure cgroup v2 mode: ``python3 tools/vm/run.py [--timeout S] -- CMD...``.

See docs/vm.rst.  Standard library only.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nsprim_vm.cli import main

if __name__ == "__main__":
    sys.exit(main())
