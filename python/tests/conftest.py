"""Where the tests find the `dplr` binary and the data the C++ tests use (scripts/test-python.sh sets both)."""
import os
import pathlib
import shutil

import pytest

REPOSITORY = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def dplr_binary():
    """The `dplr` binary the Python package is compared with: $DPLR_BIN, else build/cli/dplr, else PATH."""
    candidates = [os.environ.get("DPLR_BIN"), str(REPOSITORY / "build" / "cli" / "dplr"), shutil.which("dplr")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return os.path.abspath(candidate)
    pytest.skip("no dplr binary (set DPLR_BIN, or build build/cli/dplr)")


@pytest.fixture(scope="session")
def recorded_dir():
    """fla's recordings (tests/data/recorded/README.md)."""
    path = REPOSITORY / "tests" / "data" / "recorded"
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="session")
def report_schema():
    path = REPOSITORY / "reports" / "schema" / "dplr-report.v2.schema.json"
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema validates the reports")
    import json

    return jsonschema.Draft202012Validator(json.loads(path.read_text()))
