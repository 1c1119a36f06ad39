"""The validator tests import the case table (rule_cases.py) and the Hypothesis strategies
(strategies.py) that live next to them."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
