"""Settings shared by the whole suite.

Property-based tests draw a fixed, reproducible set of examples by default, so the suite gives
the same verdict on every run and a red CI always means a change broke something. To search new
examples instead, run ``scripts/test.sh --hypothesis-profile=explore`` (any failure it finds is
printed with the example, to be kept as a regular test).

Tests that start a process (``lmspec`` as a subprocess, DeepSpeed ranks, servers, process pools)
or train a model are marked ``integration`` (and ``slow`` past a few seconds). ``scripts/test.sh
--fast`` runs the others; there, an unmarked test that starts a process or trains fails and
says which marker it needs, so the fast tier stays fast as tests are added.
"""

from __future__ import annotations

import multiprocessing.process
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings

settings.register_profile("default", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("default")


def pytest_configure(config: pytest.Config) -> None:
    # Prepared data goes to one cache for the session, never beside the manifests of the
    # checkout's examples (and never into a user's cache). Subprocesses inherit it.
    import atexit
    import os
    import shutil
    import tempfile

    cache = tempfile.mkdtemp(prefix="lmspec-test-cache-")
    os.environ["LMSPEC_CACHE_DIR"] = cache
    atexit.register(shutil.rmtree, cache, True)

    # scripts/test.sh --fast sets it.
    if os.environ.get("LMSPEC_FAST_TIER") == "1":
        config.pluginmanager.register(FastTierGuard(), "lmspec-fast-tier-guard")


class FastTierGuard:
    """Fails an unmarked test that starts a process or trains, at the moment it does."""

    def __init__(self) -> None:
        import platform

        from lmspec.train.loop import Recipe

        # Libraries ask once per process what the processor is (DeepSpeed, at import), which
        # runs `uname -p`: asked here, so that no test is blamed for the import it does first.
        platform.processor()
        self.test: str | None = None  # the running test, while it carries neither marker
        guard = self
        popen_init = subprocess.Popen.__init__
        process_start = multiprocessing.process.BaseProcess.start
        train = Recipe.run

        def checked_popen_init(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
            guard.refuse(f"starts {args!r}")
            popen_init(self, args, *rest, **kwargs)

        def checked_start(self: multiprocessing.process.BaseProcess) -> None:
            guard.refuse("starts a process")
            process_start(self)

        def checked_run(self: Recipe) -> dict[str, float]:
            guard.refuse("trains a model")
            return train(self)

        subprocess.Popen.__init__ = checked_popen_init  # type: ignore[method-assign]
        multiprocessing.process.BaseProcess.start = checked_start  # type: ignore[method-assign]
        Recipe.run = checked_run  # type: ignore[method-assign]

    def refuse(self, what: str) -> None:
        if self.test is not None:
            pytest.fail(f"{self.test} {what}, but is not marked integration: the fast tier (scripts/test.sh "
                        "--fast) runs only tests that start no process and train nothing. Mark it "
                        "@pytest.mark.integration (and @pytest.mark.slow if it takes more than a few seconds).",
                        pytrace=False)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Iterator[None]:
        marked = item.get_closest_marker("integration") or item.get_closest_marker("slow")
        self.test = None if marked else item.nodeid
        yield
        self.test = None
