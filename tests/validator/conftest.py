"""Shared helpers of the validator tests."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

# The case table and the strategies are plain modules next to the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent))
