"""Run pytest and fail loudly when it collects nothing (pytest's exit code 5)."""

import sys

import pytest

code = pytest.main(sys.argv[1:])
if code == pytest.ExitCode.NO_TESTS_COLLECTED:
    print("error: pytest collected no tests; the suite is empty or mis-selected", file=sys.stderr)
    code = 1
sys.exit(int(code))
