"""Fixtures of the SDK's tests. The tests import the SDK of this tree (not
an installed one). Those that need a control plane take the client fixture:
it is the one of DSPOOL_SERVER, DSPOOL_TOKEN and DSPOOL_CA, which the e2e
test TestPythonSDK sets after starting `dspool up`; without them they are
skipped, saying so."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import dspool  # noqa: E402


@pytest.fixture
def client():
    if not os.environ.get("DSPOOL_SERVER"):
        pytest.skip("needs a control plane: set DSPOOL_SERVER, DSPOOL_TOKEN and DSPOOL_CA "
                    "(`go test ./e2e -run TestPythonSDK` starts `dspool up` and runs these tests with them)")
    with dspool.Client() as c:
        yield c


@pytest.fixture
def pools():
    """The pools to run jobs in from jobs: every kind of node the harness
    made (DSPOOL_TEST_POOLS, comma-separated; default: default)."""
    return [p for p in os.environ.get("DSPOOL_TEST_POOLS", "default").split(",") if p]
