"""The importer fuzz suite's budget: a small fixed one by default (derandomized, ~50 inputs per test, the whole suite
in well under 30 s), a large one with `--fuzz-long` (2,000 inputs per test, or `--fuzz-examples N`):

    QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest -q tests/fuzz --fuzz-long

(the option is registered here, so pass tests/fuzz or a file in it). The run ends with a summary per test: inputs,
how many imported, how many were refused with which error type, time, and the peak memory.
"""

from __future__ import annotations

import resource
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, settings

SHORT_EXAMPLES = 50
LONG_EXAMPLES = 2000
STATS = pytest.StashKey[dict]()


def pytest_addoption(parser):
    group = parser.getgroup("fuzz", "importer fuzz suite (tests/fuzz)")
    group.addoption("--fuzz-long", action="store_true", default=False,
                    help=f"run the importer fuzz tests with {LONG_EXAMPLES} inputs each (default {SHORT_EXAMPLES})")
    group.addoption("--fuzz-examples", type=int, default=None, help="inputs per fuzz test (overrides --fuzz-long)")


def fuzz_examples(config) -> int:
    explicit = config.getoption("--fuzz-examples", default=None)
    if explicit:
        return explicit
    return LONG_EXAMPLES if config.getoption("--fuzz-long", default=False) else SHORT_EXAMPLES


def pytest_configure(config):
    # One fixed seed (derandomize), no example database (the same inputs on every machine), a deadline per input
    # (a hang fails the test); the machine may be busy, so the deadline is generous and timing checks are off.
    settings.register_profile(
        "workbench-fuzz", max_examples=fuzz_examples(config), derandomize=True, database=None,
        deadline=timedelta(seconds=5), print_blob=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
    settings.load_profile("workbench-fuzz")
    config.stash[STATS] = {}


@pytest.fixture(scope="session")
def fuzz_stats(request) -> dict:
    """{test name: {inputs, ok, refused: {error type: n}, seconds, slowest, peak}}, printed at the end."""
    return request.config.stash[STATS]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    stats = config.stash.get(STATS, {})
    if not stats:
        return
    write = terminalreporter.write_line
    write(f"importer fuzz: {fuzz_examples(config)} inputs per test requested")
    total = 0
    for name, stat in sorted(stats.items()):
        total += stat["inputs"]
        refused = ", ".join(f"{k} {v}" for k, v in sorted(stat["refused"].items())) or "none"
        write(f"  {name}: {stat['inputs']} inputs, {stat['ok']} imported, refused: {refused}; "
              f"{stat['seconds']:.1f} s, slowest input {stat['slowest']:.3f} s, "
              f"peak traced memory of one input {stat['peak'] / 2 ** 20:.1f} MiB")
    write(f"  total {total} inputs; process peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
