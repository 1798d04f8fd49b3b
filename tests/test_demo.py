"""The README's main job (`make demo` -> `isdc-run demo`), on a small revolution."""
from __future__ import annotations

import subprocess
import sys


def test_demo_simulates_analyses_and_reports_the_crab(tmp_path):
    archive = tmp_path / "demo-archive"
    args = [sys.executable, "-m", "isdc.cli", "demo", "--archive", str(archive), "--pointings", "2",
            "--exposure", "300"]
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "2 done" in r.stdout and "Crab Nebula/Pulsar" in r.stdout
    assert (archive / "obs" / "rev0665.001" / "obs" / "rev0665" / "isgri_mosa_ima.fits").is_file()
    again = subprocess.run(args, capture_output=True, text=True)  # resumes: nothing to simulate or redo
    assert again.returncode == 0 and "already in" in again.stdout
