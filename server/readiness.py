"""Waiting for a started service to answer /readyz (the demo, the load bench, the tests)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request


def wait_until_ready(url: str, timeout: float = 60.0, process=None) -> None:
    """Return once GET url/readyz answers 200; RuntimeError after `timeout` seconds, or at once
    if `process` (a Popen) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not become ready within {timeout:g} s")
