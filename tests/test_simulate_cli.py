"""`isdc-run simulate`: options, what it writes, and clear errors with exit code 1."""
import json

import pytest

from isdc.cli import main as isdc_run
from isdc.dal.archive import Archive, read_scw_index

FAST = ["--pointings", "1", "--exposure", "40", "--slew-overhead", "5", "--slew-rate", "1.0", "--no-fsync"]


def run(capsys, *args) -> tuple[int, str, str]:
    code = isdc_run(["simulate", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_simulate_is_listed_with_its_options(capsys):
    for argv in (["--help"], ["simulate", "--help"]):
        with pytest.raises(SystemExit) as exc:
            isdc_run(argv)
        assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "simulate one revolution of IBIS/ISGRI raw data" in out
    for option in ("--archive", "--revolution", "--pointings", "--exposure", "--sky", "--seed", "--version",
                   "--pattern", "--target"):
        assert option in out


def test_simulate_writes_one_revolution_and_reports_it(tmp_path, capsys):
    code, out, err = run(capsys, "--archive", str(tmp_path), "--revolution", "665", "--version", "000",
                         "--pattern", "5x5", "--seed", "3", *FAST)
    assert code == 0, err
    assert "066500010010.000 POINTING" in out and "066500000021.000 SLEW" in out
    assert "revolution 0665.000: 2 science windows" in out
    a = Archive(tmp_path)
    assert [str(s) for s in read_scw_index(a.idx_scw(), a).scw_ids()] == ["066500000021.000", "066500010010.000"]
    truth = json.loads((tmp_path / "sim" / "0665.000" / "revolution.json").read_text())
    assert truth["run"]["pattern"] == "5x5" and truth["run"]["seed"] == 3 and truth["data_version"] == "000"
    # a second revolution goes into the same archive; the ScW index lists both
    code, out, err = run(capsys, "--archive", str(tmp_path), "--revolution", "666", "--version", "000", *FAST)
    assert code == 0, err
    assert len(read_scw_index(a.idx_scw(), a)) == 4 and len(list(a.root.glob("ic/isgri/gain/*.fits"))) == 2


@pytest.mark.parametrize("target, where", [("83.0,22.5", (83.0, 22.5)), ("1A 0535+262", (84.7274, 26.3158))])
def test_target_by_coordinates_or_by_sky_source(tmp_path, capsys, target, where):
    code, out, err = run(capsys, "--archive", str(tmp_path), "--revolution", "665", "--pattern", "staring",
                         "--target", target, *FAST)
    assert code == 0, err
    pointing = json.loads((tmp_path / "sim" / "0665.001" / "066500010010.001.json").read_text())
    assert pointing["attitude"]["ra_scx"] == pytest.approx(where[0], abs=0.01)
    assert pointing["attitude"]["dec_scx"] == pytest.approx(where[1], abs=0.01)


def test_a_sky_file(tmp_path, capsys):
    sky = tmp_path / "sky.yaml"
    sky.write_text("name: one\nsources:\n  - {name: Src, ra: 83.6, dec: 22.0, spectrum: {model: powerlaw, index: 2}, "
                   "flux: {mcrab: 200}}\n")
    code, _, err = run(capsys, "--archive", str(tmp_path / "a"), "--revolution", "665", "--sky", str(sky), *FAST)
    assert code == 0, err
    truth = json.loads((tmp_path / "a" / "sim" / "0665.001" / "revolution.json").read_text())
    assert truth["sky"] == {"name": "one", "file": "sky.yaml", "sources": 1, "grbs": 0}
    assert [s["name"] for s in truth["sources"]] == ["Src"]


@pytest.mark.parametrize("args, message", [
    (["--revolution", "10000"], "revolution 10000 outside 0..9999"),
    (["--revolution", "695", "--target", "Crab"], "from the Sun"),  # June: the Crab is behind the Sun
    (["--revolution", "665", "--target", "Nowhere X-1"], "unknown target 'Nowhere X-1'"),
    (["--revolution", "665", "--pointings", "0"], "--pointings must be >= 1"),
    (["--revolution", "665", "--exposure", "-5"], "--exposure must be > 0 s"),
    (["--revolution", "665", "--pointings", "400", "--exposure", "3600"], "after belt entry"),
])
def test_errors_are_reported_with_exit_code_1(tmp_path, capsys, args, message):
    code, out, err = run(capsys, "--archive", str(tmp_path), *args)
    assert code == 1 and message in err and err.startswith("isdc-run simulate: ")
    assert not (tmp_path / "scw").exists()  # nothing half-written


def test_bad_sky_file_and_bad_version(tmp_path, capsys):
    sky = tmp_path / "bad.yaml"
    sky.write_text("name: bad\nsources:\n  - {name: X, ra: 1, dec: 2}\n")
    code, _, err = run(capsys, "--archive", str(tmp_path), "--revolution", "665", "--sky", str(sky))
    assert code == 1 and "bad.yaml" in err and "needs key" in err
    with pytest.raises(SystemExit) as exc:
        isdc_run(["simulate", "--archive", str(tmp_path), "--revolution", "665", "--version", "1.0"])
    assert exc.value.code == 2
    assert "invalid" in capsys.readouterr().err
