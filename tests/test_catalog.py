"""Reference catalogues: GNRL-REFR-CAT written through its template, read back; user catalogues."""
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isdc.dal.catalog import Catalog, CatalogError, catalog_table, read_catalog, source_id, write_catalog
from isdc.dal.fitsfile import Table, write_fits
from isdc.dal.products import open_product
from isdc.sim.plan import separation
from isdc.sim.sky import Sky

REF = Path(__file__).resolve().parent.parent / "test_data" / "reference"


@pytest.fixture(scope="module")
def sky_catalog():
    return Sky.default().reference_catalog()


def test_round_trip_of_the_simulator_catalogue(tmp_path, sky_catalog):
    path = write_catalog(tmp_path / "gnrl_refr_cat_0001.fits", sky_catalog, version=1)
    f = open_product(path)  # validated against the GNRL-REFR-CAT template on read
    t = f.table("GNRL-REFR-CAT")
    assert len(t) == 1276 and t.header["CAT_NAME"] == "isdc-sim-default"
    assert all(f.verify_checksum(h) == ("ok", "ok") for h in f.hdus)
    back = read_catalog(path)
    np.testing.assert_array_equal(back.name, sky_catalog.name)
    np.testing.assert_array_equal(back.ra, sky_catalog.ra)
    np.testing.assert_allclose(back["ISGR_FLUX_1"], sky_catalog["ISGR_FLUX_1"], rtol=1e-6)
    np.testing.assert_array_equal(back["ISGRI_FLAG2"], sky_catalog["ISGRI_FLAG2"])
    assert back.bright().name.tolist() == sky_catalog.bright().name.tolist()
    assert set(back.columns) >= {"SOURCE_ID", "CLASS", "ERR_RAD", "ISGR_FLUX_2", "FLUX", "SEL_FLAG", "ISGRI_FLAG"}


@pytest.mark.reference
def test_user_catalogue_with_name_ra_dec_is_read_and_defaults_are_written(tmp_path):
    bat = read_catalog(REF / "swift_bat_survey6b_2.cat.fits.gz")  # BAT_CATALOG: NAME, RA_OBJ, DEC_OBJ, ...
    assert len(bat) == 1276 and "GLON_OBJ" in bat.columns
    assert not bat.has("ISGRI_FLAG") and len(bat.for_imaging()) == 1276 and len(bat.bright()) == 0
    t = catalog_table(bat, "bat")
    assert np.all(t["ISGRI_FLAG"] == 1) and np.all(np.isnan(t["ISGR_FLUX_1"])) and np.all(t["SPA_MODL"] == "POINT")
    crab = bat.within(83.63, 22.01, 0.1)
    assert bat.name[crab].tolist() == ["Crab Nebula/Pulsar"]


@pytest.mark.reference
def test_catalogue_without_required_columns_is_refused():
    with pytest.raises(CatalogError, match=r"crab_field_catalog.fits: no catalogue table.*lacks columns \['NAME', 'RA_OBJ', 'DEC_OBJ'\]"):
        read_catalog(REF / "crab_field_catalog.fits")


def test_lower_case_columns_and_bad_coordinates(tmp_path):
    p = tmp_path / "mine.fits"
    write_fits(p, [Table({"name": np.array(["a", "b"]), "ra_obj": np.array([1.0, 2.0]), "dec_obj": np.array([3.0, 4.0]),
                          "mag": np.array([10.0, 11.0])})])
    c = read_catalog(p)
    assert c.name.tolist() == ["a", "b"] and c["MAG"].tolist() == [10.0, 11.0]
    write_fits(p, [Table({"NAME": np.array(["a"]), "RA_OBJ": np.array([1.0]), "DEC_OBJ": np.array([95.0])})])
    with pytest.raises(CatalogError, match=r"mine.fits HDU 1: .*DEC_OBJ"):
        read_catalog(p)
    with pytest.raises(CatalogError, match="not_there"):
        read_catalog(tmp_path / "not_there.fits")


def test_nearest_and_within_match_brute_force(sky_catalog):
    rng = np.random.default_rng(0)
    ra, dec = rng.uniform(0, 360, 300), np.degrees(np.arcsin(rng.uniform(-1, 1, 300)))
    idx, dist = sky_catalog.nearest(ra, dec)
    for k in range(0, 300, 15):
        d = separation(ra[k], dec[k], sky_catalog.ra, sky_catalog.dec)
        assert idx[k] == np.argmin(d) and dist[k] == pytest.approx(d.min(), abs=1e-9)
    near = sky_catalog.within(83.63, 22.01, 5.0)
    d = separation(83.63, 22.01, sky_catalog.ra[near], sky_catalog.dec[near])
    assert np.all(d <= 5.0) and np.all(np.diff(d) >= 0)
    assert near.size == (separation(83.63, 22.01, sky_catalog.ra, sky_catalog.dec) <= 5.0).sum()


_ID = re.compile(r"J(\d\d)(\d\d)(\d\d\.\d)([+-])(\d\d)(\d\d)(\d\d)")


@settings(max_examples=200, deadline=None)
@given(st.floats(0.0, 359.99999), st.floats(-89.9999, 89.9999))
def test_source_id_encodes_the_position(ra, dec):
    s = source_id(ra, dec)[0]
    m = _ID.fullmatch(s)
    assert m and len(s) == 16
    h, mi, sec, sign, dd, dm, ds = m.groups()
    ra2 = (int(h) + int(mi) / 60 + float(sec) / 3600) * 15
    dec2 = (1 if sign == "+" else -1) * (int(dd) + int(dm) / 60 + int(ds) / 3600)
    assert float(separation(ra, dec, ra2, dec2)) < 1.5 / 3600  # 0.1 s of time, 1 arcsec


def test_catalog_checks_lengths():
    with pytest.raises(CatalogError, match="column FLUX has 1 rows"):
        Catalog(["a", "b"], [1.0, 2.0], [0.0, 0.0], {"FLUX": [1.0]})
    with pytest.raises(CatalogError, match="empty"):
        Catalog([], [], []).nearest(1.0, 2.0)
