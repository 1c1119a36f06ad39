"""Settings shared by the whole suite.

Property-based tests draw a fixed, reproducible set of examples by default, so the suite gives
the same verdict on every run and a red CI always means a change broke something. To search new
examples instead, run ``scripts/test.sh --hypothesis-profile=explore`` (any failure it finds is
printed with the example, to be kept as a regular test).
"""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("default", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("default")
