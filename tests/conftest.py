"""Fixtures shared by the test files (keep this small and general)."""
import os
import shutil
import string

import numpy as np
import pytest
from hypothesis import settings

from isdc.dal.fitsfile import native_dtype

# CI runs every property test on the same (derandomized) examples, so a run is reproducible
# and a red CI run points at a real regression; developers' runs explore new random examples.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


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


def synthetic_hdu(template, nrows: int = 5, seed: int = 0):
    """A valid HDU of `template` (an isdc.dal.templates.Template) filled with random values.

    Every column gets values spanning its type (integers from min to max, ASCII text up to
    the column width), every keyword a value of its type; images are 6 x 8 float32.
    """
    rng = np.random.default_rng(seed)
    typed = {str: "TEST", int: 7, float: 1.5, bool: True}
    keywords = {k.name: typed[k.type] for k in template.keywords if k.value is None}
    if template.kind == "image":
        return template.image(rng.normal(size=(6, 8)).astype(np.float32), **keywords)
    columns = {}
    for spec in template.columns:
        dt = native_dtype(spec)
        shape = (nrows,) + spec.file_dtype().shape
        if dt.kind == "U":
            letters = list(string.ascii_letters + string.digits + " ")
            columns[spec.name] = np.array(["".join(rng.choice(letters, rng.integers(0, spec.repeat + 1))).strip()
                                           for _ in range(nrows)])
        elif dt.kind == "b":
            columns[spec.name] = rng.random(shape) > 0.5
        elif dt.kind in "iu":
            info = np.iinfo(dt)
            v = rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True)
            v.flat[:2] = [info.min, info.max][: v.size]
            columns[spec.name] = v
        else:
            columns[spec.name] = rng.normal(scale=1e3, size=shape).astype(dt)
    return template.table(columns, **keywords)


@pytest.fixture(scope="session")
def synthetic():
    """`synthetic_hdu` as a fixture: `synthetic(template, nrows=5, seed=0)`."""
    return synthetic_hdu
