"""Headless chromium for the browser tests: Debian's ``chromium`` driven through its
``chromium-driver`` by selenium, nothing downloaded at run time (``.ci/run`` installs both with
apt-get). Where they are missing the tests skip, except in CI (``CI=true``), where they fail."""

from __future__ import annotations

import os
import shutil
import socket
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = ("chromium", "chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, alive=lambda: True) -> None:
    """Wait until ``url`` answers 200 (``alive()`` False stops early: the server died)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not alive():
            raise AssertionError(f"the server of {url} exited before answering")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"{url} did not answer within {timeout:.0f} s")


def chromium(width: int = 1280, height: int = 1000):
    """A headless selenium Chrome driver on the system chromium (quit it after use)."""
    binary = next(filter(None, map(shutil.which, CHROMIUM)), None)
    driver_bin = shutil.which("chromedriver")
    if not (binary and driver_bin):
        reason = "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium manager: never download a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(arg)
    opts.add_argument(f"--window-size={width},{height}")
    return webdriver.Chrome(options=opts, service=Service(executable_path=driver_bin))


def artifact_dir(tmp_path: Path) -> Path:
    """Where a test saves screenshots: ``$INTERPFLOW_TEST_ARTIFACTS`` if set, else ``tmp_path``."""
    out = Path(os.environ.get("INTERPFLOW_TEST_ARTIFACTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out
