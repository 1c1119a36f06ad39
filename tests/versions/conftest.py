"""The version tests import the Hypothesis strategies that live next to them
(version_strategies.py; a name of its own, since tests/validator has a strategies.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
