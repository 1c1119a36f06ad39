"""Headless Chromium for the report tests: a screenshot and the page's console messages."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome", "chrome-headless-shell")


def chromium() -> str:
    """The browser's path, or skip: scripts/test.sh installs it with the system package manager
    where it can (``apt-get install chromium``)."""
    found = next((p for p in map(shutil.which, BROWSERS) if p), None)
    if found is None:
        pytest.skip("headless Chromium is not installed (apt-get install chromium): the report's "
                    "HTML and data were checked, its rendering in a browser was not")
    return found


def render(html: Path, screenshot: Path) -> list[str]:
    """Load ``html`` in headless Chromium, save a screenshot, return the console messages."""
    profile = screenshot.parent / f".{screenshot.stem}-profile"
    result = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", f"--user-data-dir={profile}", "--window-size=1280,1600",
         "--enable-logging=stderr", "--v=0", f"--screenshot={screenshot}", html.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert screenshot.is_file(), result.stderr[-3000:]
    return [line for line in result.stderr.splitlines() if ":CONSOLE" in line]


def assert_not_blank(png: Path) -> None:
    from matplotlib.image import imread

    img = imread(str(png))[..., :3]
    assert img.shape[0] >= 1000 and img.shape[1] >= 1200, img.shape
    pixels = img.reshape(-1, 3)
    colours, counts = np.unique((pixels * 255).astype(np.uint8), axis=0, return_counts=True)
    background = counts.max() / counts.sum()
    assert len(colours) > 100 and background < 0.9, (len(colours), background)
