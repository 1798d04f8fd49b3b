"""Fixtures shared by the test files (keep this small and general)."""
import os
import shutil

import pytest


@pytest.fixture(scope="session")
def fitsverify() -> str:
    """Path of the `fitsverify` program (Debian package fitsverify).

    Missing on a developer's machine: the test is skipped with the reason. Missing in CI
    (environment variable CI set): the test fails, because `.ci/run` installs fitsverify and
    a CI run that silently skipped the structural checks would prove nothing.
    """
    exe = shutil.which("fitsverify")
    if exe is None:
        reason = "fitsverify is not installed (Debian package fitsverify)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}, but CI must run the fitsverify tests: .ci/run installs it")
        pytest.skip(reason)
    return exe
