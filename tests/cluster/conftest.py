"""Makes ``upstream`` (and the training tests' ``train_helpers``) importable by the tests here
(pytest runs in importlib mode)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "train"))
