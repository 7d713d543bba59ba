"""A pytest plugin that logs memory after every test, to find what drives the suite's peak.

Usage (from the repository root, in the test environment)::

    PYTHONPATH=benchmarks MEMORY_LOG=/tmp/memory.log xvfb-run -a python -m pytest -p memory_per_test

Each line: peak RSS so far (MB), current RSS (MB), seconds the test took, test id. The tests that
raise the first column are the ones to look at.
"""

from __future__ import annotations

import os
import resource
import time

_log = open(os.environ.get("MEMORY_LOG", "memory_per_test.log"), "w")  # noqa: SIM115
_last = [time.monotonic()]


def _current_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def pytest_runtest_logfinish(nodeid, location):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    now = time.monotonic()
    _log.write(f"{peak:8.0f} {_current_rss_mb():8.0f} {now - _last[0]:7.1f} {nodeid}\n")
    _log.flush()
    _last[0] = now
