"""The simulated instrument's IC files: response and ISGR-GAIN-MOD, written and read back."""
import numpy as np
import pytest

from isdc.dal import templates
from isdc.dal.fitsfile import read_fits, write_fits
from isdc.dal.products import open_product
from isdc.instruments.isgri.detector_model import GainModel
from isdc.instruments.isgri.response import IsgriResponse
from isdc.resources import data_dir
from isdc.sim.icfiles import gain_model_from_table, gain_model_table, write_response


def test_response_round_trip_through_ogip_file(tmp_path):
    r = IsgriResponse.default()
    p = write_response(tmp_path / "rsp.fits", r, version=3, vstart=1000.0)
    back = IsgriResponse.load(p)
    np.testing.assert_array_equal(back.matrix, r.matrix.astype(np.float32))
    np.testing.assert_array_equal(back.e_min, r.e_min.astype(np.float32))
    f = open_product(p)
    m = f.table("SPECRESP MATRIX")
    assert m.header["VERSION"] == 3 and m.header["HDUCLAS2"] == "RSP_MATRIX" and m.header["TLMIN4"] == 0
    assert f.table("EBOUNDS").header["DETCHANS"] == 256


def test_shipped_response_file_is_valid_and_documented():
    f = open_product(data_dir("ic_files") / "isgri" / "isgr_rmf_rsp_0001.fits.gz")
    m = f.table("SPECRESP MATRIX")
    assert m.header["RISE_MIN"] == 16 and m.header["RISE_MAX"] == 116
    assert any("x 0.85" in str(h) for h in m.header["HISTORY"])
    assert all(f.verify_checksum(h) == ("ok", "ok") for h in f.hdus)


def test_gain_model_round_trip(tmp_path):
    g = GainModel(gain_drift=3e-5, t_ref=2500.0)
    tab = gain_model_table(g, version=2, vstart=2000.0, vstop=4000.0)
    write_fits(tmp_path / "gain.fits", [tab])
    back_tab = read_fits(tmp_path / "gain.fits").table("ISGR-GAIN-MOD")
    back = gain_model_from_table(back_tab)
    for name in ("gain", "offset", "gain_tcoef", "offset_tcoef", "rt_gain", "rt_offset"):
        np.testing.assert_array_equal(getattr(back, name), getattr(g, name))
    assert (back.gain_drift, back.t_ref, back.charge_loss) == (3e-5, 2500.0, g.charge_loss)
    e = np.array([20.0, 511.0])
    assert np.allclose(back.pha(e, 50.0, 3, 3000.0, 4.0), g.pha(e, 50.0, 3, 3000.0, 4.0), rtol=1e-15)
    # rows in another order are put back in module order; a missing module is refused
    t = templates.get("ISGR-GAIN-MOD")
    keywords = {k.name: tab.header[k.name] for k in t.keywords if k.value is None}
    shuffled = t.table({k: v[::-1] for k, v in tab.columns.items()}, **keywords)
    np.testing.assert_array_equal(gain_model_from_table(shuffled).gain, g.gain)
    broken = t.table({k: np.r_[v[:7], v[6:7]] for k, v in tab.columns.items()}, **keywords)
    with pytest.raises(templates.TemplateError, match="each module"):
        gain_model_from_table(broken)


def test_shipped_ic_files_are_indexed_and_are_the_default_models():
    from isdc.dal.icindex import scan_ic_tree
    from isdc.sim.icfiles import SIM_GAIN_FILE

    ix = scan_ic_tree(data_dir("ic_files"))
    for structure in ("ISGR-RMF.-RSP", "ISGR-EBDS-MOD", "ISGR-GAIN-MOD"):
        sel = ix.select("isgri", structure, 3006.1)
        assert sel.entry.version == 1
    g = gain_model_from_table(open_product(data_dir("ic_files") / SIM_GAIN_FILE).table("ISGR-GAIN-MOD"))
    default = GainModel()
    for name in ("gain", "offset", "gain_tcoef", "offset_tcoef", "rt_gain", "rt_offset"):
        np.testing.assert_array_equal(getattr(g, name), getattr(default, name))
    assert (g.gain_drift, g.t_ref, g.charge_loss, g.charge_loss_knee) == (
        default.gain_drift, default.t_ref, default.charge_loss, default.charge_loss_knee)
