"""A simulated revolution in an archive: the contract's layout, verify and fitsverify clean,
IC selection of the true gain, aux data, truth against the files, bit-identical reruns, and
the committed sample in test_data/sim regenerated bit for bit."""
import hashlib
import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest

from isdc.cli import main as isdc_run
from isdc.dal.archive import Archive, read_scw_index, read_scw_info, read_time_correlation
from isdc.dal.catalog import read_catalog
from isdc.dal.icindex import read_ic_index
from isdc.dal.products import open_product
from isdc.ids import CONS, ScwId
from isdc.imaging.projection import Attitude
from isdc.instruments.isgri.geometry import isgri_geometry
from isdc.sim.events import GRB_BASE, STANDARD_BANDS, band_key, cor_energy, cor_rise_time
from isdc.sim.icfiles import gain_model_from_table, geometry_from_mask
from isdc.sim.plan import plan_revolution, revolution_phase
from isdc.sim.sky import Sky
from isdc.sim.truth import read_revolution_truth, read_scw_truth
from isdc.sim.writer import gain_file, simulate_revolution

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "test_data" / "sim"
SAMPLE_ARGS = ["simulate", "--archive", "test_data/sim/archive", "--revolution", "665", "--pointings", "3",
               "--exposure", "100", "--sky", "test_data/sim/sky.yaml", "--seed", "5", "--pattern", "hex",
               "--target", "Crab", "--slew-overhead", "10", "--slew-rate", "0.5"]
"""The command that made test_data/sim/archive (as written in test_data/README.md)."""
SECONDS_PER_DAY = 86400.0
PLAN = dict(n_pointings=2, exposure=80.0, pattern="hex", seed=5, target="Crab", slew_overhead_s=10.0, slew_rate=0.5)


def sky_with_grb() -> Sky:
    """Crab, a faint source, and a GRB 30 s into the first pointing."""
    first = plan_revolution(665, 2, 80.0, "hex", 5, "Crab", slew_overhead_s=10.0, slew_rate=0.5)[1]
    t_grb = first.tstart + 30.0 / SECONDS_PER_DAY
    return Sky.loads(f"""
name: archive-test
sources:
  - {{name: Crab, ra: 83.6332, dec: 22.0145, spectrum: {{model: powerlaw, index: 2.1}}, flux: {{mcrab: 1000}}}}
  - {{name: Faint, ra: 85.0, dec: 24.0, spectrum: {{model: powerlaw, index: 2.0}}, flux: {{mcrab: 50}}}}
grbs:
  - {{name: GRB sim, time: {t_grb}, ra: 84.0, dec: 21.0, fluence: 3.0e-6, spectrum: {{model: cutoffpl, index: 1.0, cutoff: 300}},
     lightcurve: {{shape: fred, duration: 10}}}}
""", "archive-test.yaml")


def simulate(root: Path, **changes) -> object:
    kw = dict(PLAN, sky=sky_with_grb(), durable=False)
    kw.update(changes)
    return simulate_revolution(root, 665, **kw)


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> tuple[Archive, object]:
    root = tmp_path_factory.mktemp("archive")
    return Archive(root), simulate(root)


# --------------------------------------------------------------------------- structure

def test_isdc_run_verify_passes(archive, capsys):
    a, _ = archive
    assert isdc_run(["verify", "-q", str(a.root)]) == 0
    out = capsys.readouterr().out
    assert "0 errors, 0 warnings -> OK" in out


SUMMARY = re.compile(r"Verification found (\d+) warning\(s\) and (\d+) error\(s\)")


@pytest.mark.fitsverify
def test_fitsverify_finds_nothing_in_any_file(archive, fitsverify):
    a, _ = archive
    files = sorted(p for p in a.root.rglob("*") if p.name.endswith((".fits", ".fits.gz")))
    assert len(files) >= 20
    for path in files:
        out = subprocess.run([fitsverify, str(path)], capture_output=True, text=True, timeout=60).stdout
        assert SUMMARY.findall(out) == [("0", "0")], f"fitsverify on {path}:\n{out}"


def test_layout_of_the_contract(archive):
    a, result = archive
    plans = result.plans
    assert [p.scw_id.is_slew for p in plans] == [True, False, True, False]
    for p in plans:
        d = a.scw_dir(p.scw_id)
        assert {f.name for f in d.iterdir()} == {"swg.fits", "isgri_events.fits", "isgri_hk.fits"}
        info = read_scw_info(a, p.scw_id)
        assert (info.tstart, info.tstop) == (p.tstart, p.tstop) and info.sw_type == p.scw_id.sw_type
        assert info.obtstart is not None and info.obtend > info.obtstart
    for rel in ("scw/0665/rev.001/revolution_plan.fits", "aux/adp/0665.001/attitude_historic.fits",
                "aux/adp/0665.001/orbit_historic.fits", "aux/adp/0665.001/time_correlation.fits",
                "ic/isgri/isgr_rmf_rsp_0001.fits.gz", "ic/isgri/ibis_mask_mod_0001.fits", "ic/" + gain_file(665),
                "idx/ic/ic_master_file.fits", "idx/scw/GNRL-SCWG-GRP-IDX.fits", "cat/gnrl_refr_cat.fits",
                "sim/0665.001/revolution.json"):
        assert (a.root / rel).is_file(), rel
    index = read_scw_index(a.idx_scw(), a)
    assert index.select(revolution=665) == [p.scw_id for p in plans]
    assert index.select(sw_type="POINTING", ra=83.63, dec=22.01, radius_deg=2.5) == [plans[1].scw_id, plans[3].scw_id]
    plan_tab = open_product(a.rev_dir(665, CONS) / "revolution_plan.fits").table("INTL-PLAN-HIS")
    assert list(plan_tab["SWID"]) == [p.scw_id.swid for p in plans]
    cat = read_catalog(a.cat_dir() / "gnrl_refr_cat.fits")
    assert sorted(cat.name) == ["Crab", "Faint"]


def test_event_and_hk_files(archive):
    a, result = archive
    for p in result.plans:
        d = a.scw_dir(p.scw_id)
        ev = open_product(d / "isgri_events.fits").table("ISGR-EVTS-ALL")  # validated against the template
        hk = open_product(d / "isgri_hk.fits").table("ISGR-HK..-CNV")
        truth = read_scw_truth(a, p.scw_id)
        assert len(ev) == truth["events"] == result.events[str(p.scw_id)] > 1000
        assert np.all(np.diff(ev["TIME"]) >= 0)
        assert ev["TIME"][0] >= p.tstart - 1e-9 and ev["TIME"][-1] <= p.tstop
        assert ev.header["SWID"] == p.scw_id.swid and ev.header["TEMPLATE"] == "ISGR-EVTS-ALL"
        assert len(hk) == sum(truth["cycles"]["hk_row"]) and hk["MDU_TEMP"].shape == (len(hk), 8)
        assert ev.header["GRPID1"] == -1 and ev.header["GRPLC1"] == "swg.fits"  # back-pointer to the ScW group


# --------------------------------------------------------------------------- calibration and aux data

def test_ic_selection_gives_the_true_gain_and_the_mask(archive):
    a, result = archive
    index = read_ic_index(a.idx_ic(), a.root)
    t = result.plans[1].tstart
    sel = index.select("isgri", "ISGR-GAIN-MOD", t)
    assert sel.file == gain_file(665)
    gain = gain_model_from_table(open_product(sel.path).table("ISGR-GAIN-MOD"))
    truth = read_revolution_truth(a, 665, CONS)["gain"]
    for name in ("gain", "offset", "gain_tcoef", "offset_tcoef", "rt_gain", "rt_offset"):
        assert getattr(gain, name).tolist() == truth[name]
    assert (gain.t_ref, gain.gain_drift) == (truth["t_ref"], truth["gain_drift"]) and gain.t_ref < t
    # the drift is real: the revolution's gain is the mission's law at its start
    from isdc.instruments.isgri.detector_model import GainModel

    np.testing.assert_allclose(gain.gain_at(np.arange(8), t, 0.0), GainModel().gain_at(np.arange(8), t, 0.0), rtol=1e-8)
    np.testing.assert_allclose(gain.gain / GainModel().gain, 1 + GainModel().gain_drift * (gain.t_ref - 3000.0))
    msel = index.select("isgri", "IBIS-MASK-MOD", t)
    mask = open_product(msel.path).image(msel.hdu)
    geom = geometry_from_mask(mask)
    np.testing.assert_array_equal(geom.mask, isgri_geometry().mask)
    assert (geom.shape, geom.mask_distance_mm, geom.pixel_pitch_mm) == ((134, 130), 3203.0, 4.6)
    for structure in ("ISGR-RMF.-RSP", "ISGR-EBDS-MOD"):
        assert index.select("isgri", structure, t).version == 1


def test_attitude_orbit_and_time_correlation(archive):
    a, result = archive
    plans = result.plans
    att = open_product(a.aux_adp(665, CONS) / "attitude_historic.fits").table("INTL-ATTI-HIS")
    dt = np.diff(att["TIME"]) * SECONDS_PER_DAY
    assert np.allclose(dt[:-1], 8.0, atol=1e-5) and 0 < dt[-1] <= 8.0 + 1e-5
    assert att["TIME"][0] == pytest.approx(plans[0].tstart, abs=1e-9) and att["TIME"][-1] <= plans[-1].tstop + 1e-9
    # RA/DEC of X and Z and POSANGLE agree (POSANGLE: angle of Z from north towards west)
    for i in range(0, len(att), 7):
        z = Attitude.from_posangle(att["RA_SCX"][i], att["DEC_SCX"][i], att["POSANGLE"][i])
        assert z.ra_z == pytest.approx(att["RA_SCZ"][i], abs=1e-6) and z.dec_z == pytest.approx(att["DEC_SCZ"][i], abs=1e-6)
    # during a pointing the X axis stays within the jitter of the commanded pointing
    p = plans[1]
    inside = (att["TIME"] > p.tstart) & (att["TIME"] < p.tstop)
    from isdc.sim.plan import separation

    assert separation(att["RA_SCX"][inside], att["DEC_SCX"][inside], p.ra_x, p.dec_x).max() < 20 / 3600
    orb = open_product(a.aux_adp(665, CONS) / "orbit_historic.fits").table("INTL-ORBI-SCP")
    np.testing.assert_allclose(orb["REVOL_PHASE"], revolution_phase(orb["TIME"]), atol=1e-12)
    pos = np.column_stack([orb["XPOS"], orb["YPOS"], orb["ZPOS"]])
    vel = np.column_stack([orb["XVEL"], orb["YVEL"], orb["ZVEL"]])
    np.testing.assert_allclose(np.linalg.norm(pos, axis=1), orb["DISTANCE"])
    step = np.diff(orb["TIME"]) * SECONDS_PER_DAY
    np.testing.assert_allclose(np.linalg.norm(np.diff(pos, axis=0), axis=1),
                               np.linalg.norm(0.5 * (vel[1:] + vel[:-1]), axis=1) * step, rtol=1e-4)
    tc = read_time_correlation(a.time_correlation(665, CONS))
    for p in plans:
        info = read_scw_info(a, p.scw_id)
        assert tc.obt_to_ijd(info.obtstart) == pytest.approx(p.tstart, abs=2e-11)  # one tick


# --------------------------------------------------------------------------- truth against the files

def _cor_from_files(a: Archive, scw: ScwId):
    """COR energies and rise times computed only from the archive: events, HK temperatures of
    the event's cycle, and the gain the IC index selects."""
    d = a.scw_dir(scw)
    ev = open_product(d / "isgri_events.fits").table("ISGR-EVTS-ALL")
    hk = open_product(d / "isgri_hk.fits").table("ISGR-HK..-CNV")
    index = read_ic_index(a.idx_ic(), a.root)
    gain = gain_model_from_table(open_product(index.select("isgri", "ISGR-GAIN-MOD", ev.header["TSTART"]).path)
                                 .table("ISGR-GAIN-MOD"))
    from isdc.instruments.isgri.geometry import isgri_module

    module = isgri_module(ev["ISGRI_Z"].astype(int), ev["ISGRI_Y"].astype(int))
    # HK cycles are 8 on-board seconds: match events to rows by OBT
    row = np.clip(np.searchsorted(hk["OB_TIME"], ev["OB_TIME"], side="right") - 1, 0, len(hk) - 1)
    has_row = ((ev["OB_TIME"] >= hk["OB_TIME"][row])
               & (ev["OB_TIME"] < hk["OB_TIME"][row] + np.rint(hk["CYCLE_LEN"][row] * 2**20).astype(np.int64)))
    temp = hk["MDU_TEMP"][row, module].astype(float)
    energy = cor_energy(ev["ISGRI_PHA"], ev["RISE_TIME"], module, ev["TIME"], temp, gain)
    return ev, hk, energy, cor_rise_time(ev["RISE_TIME"], module, gain), has_row


def test_truth_agrees_with_the_event_files(archive):
    """Counts per band (COR from the files alone), GTIs, ONTIME, dead time from the HK file,
    source and GRB entries: the truth describes the data that were written."""
    a, result = archive
    seen_grb = False
    for p in result.plans:
        truth = read_scw_truth(a, p.scw_id)
        ev, hk, energy, rt, has_row = _cor_from_files(a, p.scw_id)
        window = (rt >= 16) & (rt < 116)
        for band in STANDARD_BANDS:
            n = int(((energy >= band[0]) & (energy < band[1]) & window & has_row).sum())
            n_all = int(((energy >= band[0]) & (energy < band[1]) & window).sum())
            want = truth["selected_events"][band_key(band)]
            # events of cycles whose HK row was lost take a neighbour's temperature
            assert n <= want and abs(n_all - want) <= max(3, 1e-3 * want) and n >= want - (~has_row).sum()
            parts = sum(s["bands"][band_key(band)]["counts"] for s in truth["sources"])
            assert parts + truth["background"]["bands"][band_key(band)]["counts"] <= want
        gti = np.array(truth["gti"])
        assert truth["ontime"] == pytest.approx(((gti[:, 1] - gti[:, 0]) * SECONDS_PER_DAY).sum(), rel=1e-6)
        idx = np.searchsorted(gti[:, 0], ev["TIME"], side="right") - 1
        assert np.all(idx >= 0) and np.all(ev["TIME"] <= gti[idx, 1] + 1e-9)  # every event in a truth GTI
        # dead time: the DEAD step's estimate from the HK file against the truth, per module
        d_hk = (hk.header["TAU_EVT"] * (hk["TRIG_CNT"] + hk["VETO_CNT"]) + hk.header["TAU_VETO"] * hk["VETO_STB"]) \
            / hk["CYCLE_LEN"][:, None]
        d_true = np.array(truth["cycles"]["dead_fraction"])[np.array(truth["cycles"]["hk_row"])]
        np.testing.assert_allclose(d_hk.mean(axis=0), d_true.mean(axis=0), rtol=0.01)
        assert 0.2 < np.mean(truth["dead_fraction"]) < 0.3 and truth["deadc"] == pytest.approx(
            1 - np.mean(truth["dead_fraction"]), abs=0.01)
        names = {s["name"] for s in truth["sources"]}
        assert "Crab" in names and (p.is_slew or "Faint" in names)
        for s in truth["sources"]:
            if s["label"] >= GRB_BASE:
                seen_grb = True
                assert s["events"] > 50 and s["fluence_fraction_gti"] > 0.5
    assert seen_grb
    rev = read_revolution_truth(a, 665, CONS)
    assert [x["name"] for x in rev["calibration_lines"]][:4] == ["Cd K-alpha", "Te K-alpha", "Te K-beta", "W K-alpha"]
    assert rev["scws"] == [str(p.scw_id) for p in result.plans]
    assert {s["name"] for s in rev["sources"]} == {"Crab", "Faint", "GRB sim"}


# --------------------------------------------------------------------------- reproducibility

def test_same_seed_same_bytes(archive, tmp_path):
    a, _ = archive
    simulate(tmp_path / "again")
    first, second = digests(a.root), digests(tmp_path / "again")
    assert first == second and len(first) > 25
    simulate(tmp_path / "other", seed=6)
    other = digests(tmp_path / "other")
    events = [k for k in first if k.endswith("isgri_events.fits")]
    assert all(first[k] != other.get(k) for k in events)


def test_committed_sample_regenerates_bit_for_bit(tmp_path, monkeypatch, capsys):
    """test_data/sim/archive is what its documented command writes, byte for byte."""
    readme = (REPO / "test_data" / "README.md").read_text()
    assert "isdc-run " + shlex.join(SAMPLE_ARGS) in readme
    committed = digests(SAMPLE / "archive")
    assert sum((SAMPLE / "archive" / k).stat().st_size for k in committed) < 10e6
    monkeypatch.chdir(REPO)
    args = list(SAMPLE_ARGS)
    args[args.index("--archive") + 1] = str(tmp_path / "sample")
    assert isdc_run(args) == 0
    assert digests(tmp_path / "sample") == committed
