"""Hostile input: our readers on mutated real INTEGRAL files raise only our own clear errors.

Every reader the pipeline applies to files it did not write — the FITS reader, tables,
images, groupings, the verifier, catalogues, sky images, the IC scanner — is run on real
files from test_data/reference with random damage: bit flips and byte runs anywhere,
truncation, header cards rewritten with nonsense values (NAXIS, TFORM, BITPIX, EXTNAME,
MEMBER_LOCATION...). Allowed outcomes: a result, or a FitsError (our base class, which
names the file). Anything else — IndexError, ValueError from numpy, a crash — fails.
"""
from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from isdc.dal.catalog import read_catalog
from isdc.dal.fitsfile import FitsError, FitsFile
from isdc.dal.grouping import Grouping, grouping_hdus
from isdc.dal.skyimages import read_sky_images
from isdc.dal.verify import verify

REF = Path(__file__).resolve().parent.parent / "test_data" / "reference"
FILES = ["isgri_sky_ima_066500280010.fits.gz", "crab_field_catalog.fits", "sc_orbit_param_078900560010.fits.gz",
         "isgri_arf_v17_osa5era.fits", "swift_bat_survey6b_2.cat.fits.gz"]
FUZZED = {"inputs": 0}
# Examples per fuzz test are multiplied by ISDC_FUZZ_SCALE (default 1): run e.g.
# `ISDC_FUZZ_SCALE=50 pytest tests/test_fuzz_readers.py` locally before committing a reader.
SCALE = max(1, int(os.environ.get("ISDC_FUZZ_SCALE", "1")))


def _raw(name: str) -> bytes:
    data = (REF / name).read_bytes()
    return gzip.decompress(data) if name.endswith(".gz") else data


RAW = {name: _raw(name) for name in FILES}


def _cards(raw: bytes) -> list[int]:
    """Byte offsets of header cards (80-byte records before each END), at most 400."""
    out, off = [], 0
    while off + 80 <= len(raw) and len(out) < 400:
        card = raw[off : off + 80]
        if card[:8] == b"END     ":
            off = (off // 2880 + 1) * 2880
            # skip the data unit roughly: scan for the next XTENSION card at a block boundary
            while off < len(raw) and raw[off : off + 9] != b"XTENSION=":
                off += 2880
            continue
        if card[8:10] == b"= ":
            out.append(off)
        off += 80
    return out


NASTY = [b"-1", b"0", b"99999999999", b"'1P(E)'", b"'9999X'", b"'../../../etc/passwd'", b"'/etc/passwd'",
         b"T", b"'ISGR-SKY.-IMA'", b"-64", b"1.5E309", b"'GROUPING'", b"'file:///x'", b"''", b"\x00\xff"]


def _mutate(raw: bytes, data) -> bytes:
    b = bytearray(raw)
    kind = data.draw(st.sampled_from(["flip", "run", "truncate", "card", "cards"]))
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, 20))):
            i = data.draw(st.integers(0, len(b) - 1))
            b[i] ^= 1 << data.draw(st.integers(0, 7))
    elif kind == "run":
        i = data.draw(st.integers(0, len(b) - 1))
        b[i : i + 64] = data.draw(st.binary(min_size=1, max_size=64))
    elif kind == "truncate":
        b = b[: data.draw(st.integers(0, len(b) - 1))]
    else:
        offs = _cards(raw)
        for _ in range(1 if kind == "card" else data.draw(st.integers(2, 6))):
            off = data.draw(st.sampled_from(offs))
            val = data.draw(st.sampled_from(NASTY))
            field = val.ljust(70)[:70]
            b[off + 10 : off + 80] = field
    return bytes(b)


def _exercise(path: Path, root: Path) -> None:
    """Every reader on one file; only FitsError (and subclasses) may escape."""
    try:
        f = FitsFile(path)
        for info in f.hdus:
            try:
                if info.xtension == "BINTABLE":
                    f.table(info.index)
                elif info.xtension in ("PRIMARY", "IMAGE"):
                    f.image(info.index)
                f.verify_checksum(info)
            except FitsError:
                pass
        for info in grouping_hdus(f):
            try:
                Grouping.read(f, info.extver)
            except FitsError:
                pass
    except FitsError:
        pass
    for reader in (read_catalog, read_sky_images):
        try:
            reader(path)
        except FitsError:
            pass
    report = verify([path], root=root)  # the verifier reports, it never raises
    assert isinstance(report.ok, bool)


@pytest.mark.parametrize("name", FILES)
@settings(max_examples=60 * SCALE, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_reference_files_raise_only_our_errors(name, data, tmp_path):
    mutated = _mutate(RAW[name], data)
    path = tmp_path / name.replace(".gz", "")
    path.write_bytes(mutated)
    _exercise(path, tmp_path)
    gz = tmp_path / (path.name + ".gz")
    gz.write_bytes(gzip.compress(mutated, 1))
    _exercise(gz, tmp_path)
    FUZZED["inputs"] += 2


def test_broken_gzip_stream_is_a_clear_error(tmp_path):
    p = tmp_path / "x.fits.gz"
    p.write_bytes((REF / FILES[0]).read_bytes()[:5000])
    with pytest.raises(FitsError, match="x.fits.gz"):
        FitsFile(p)


def test_hostile_grouping_locations_in_a_real_grouping_never_leave_the_root(tmp_path):
    """The real OSA grouping with MEMBER_LOCATIONs rewritten to escape: verify refuses, reads nothing outside."""
    raw = bytearray(RAW[FILES[0]])
    f = FitsFile(REF / FILES[0])
    g = f.find("GROUPING")
    table = f.table("GROUPING")
    width = int(g.header["NAXIS1"])
    loc_off = 8 + 32 + 4 + 4  # MEMBER_XTENSION 8A, MEMBER_NAME 32A, VERSION 1J, POSITION 1J
    evil = [b"../../../../etc/passwd", b"/etc/passwd", b"file:///etc/passwd", b"http://evil/x", b"..%2f..%2fx"]
    for row, loc in enumerate(evil):
        start = g.data_offset + row * width + loc_off
        raw[start : start + 256] = loc.ljust(256)
    inside = tmp_path / "root" / "sub"
    inside.mkdir(parents=True)
    p = inside / "ima.fits"
    p.write_bytes(bytes(raw))
    rep = verify([p], root=tmp_path / "root")
    assert not rep.ok
    text = rep.text()
    assert len(table) == 5 and text.count("REFUSED") + text.count("refused") >= 5


# --------------------------------------------------------------------------- readers of archive files
# The readers the pipeline applies to an archive it did not write: template-validated
# products (`open_product`, `Product.read`), the template validator on foreign HDUs, the
# ScW index, the IC index and the IC tree scan, time-correlation tables, ScW groups. Seeds:
# the committed simulated archive (files that carry TEMPLATE keywords, so validation runs
# for real) and two more real OSA products whose structures have our templates' names. Each
# reader may return or raise the error it documents; nothing else.

from isdc.dal.archive import Archive, ArchiveError, build_scw_index, read_scw_index, read_scw_info, \
    read_time_correlation  # noqa: E402
from isdc.dal.icindex import ICError, read_ic_index, scan_ic_tree  # noqa: E402
from isdc.dal.products import Product, open_product  # noqa: E402
from isdc.dal.templates import TemplateError, all_templates, validate_hdu  # noqa: E402
from isdc.ids import ScwId  # noqa: E402

SIM = Path(__file__).resolve().parent.parent / "test_data" / "sim" / "archive"
SCW = ScwId.parse("066500010010.001")
SIM_FILES = {  # seed -> where it lives in an archive
    "swg.fits": f"scw/0665/{SCW}/swg.fits",
    "isgri_hk.fits": f"scw/0665/{SCW}/isgri_hk.fits",
    "time_correlation.fits": "aux/adp/0665.001/time_correlation.fits",
    "attitude_historic.fits": "aux/adp/0665.001/attitude_historic.fits",
    "revolution_plan.fits": "scw/0665/rev.001/revolution_plan.fits",
    "gnrl_refr_cat.fits": "cat/gnrl_refr_cat.fits",
    "ic_master_file.fits": "idx/ic/ic_master_file.fits",
    "GNRL-SCWG-GRP-IDX.fits": "idx/scw/GNRL-SCWG-GRP-IDX.fits",
    "isgr_gain_mod_r0665.fits": "ic/isgri/gain/isgr_gain_mod_r0665.fits",
}
OSA_PRODUCTS = ["isgri_lc_example.fits", "isgri_spec_4U1700-377_005100410010.fits"]
SEEDS = {**{n: (SIM / rel).read_bytes() for n, rel in SIM_FILES.items()},
         **{n: _raw(n) for n in OSA_PRODUCTS}}
TEMPLATES = sorted(all_templates().items())


def _mutate_templated(raw: bytes, data) -> bytes:
    """`_mutate`, or a header card turned into TEMPLATE/TEMPLVER of a random template (so the
    validator judges a foreign or damaged HDU against a structure it was not made from)."""
    if data.draw(st.booleans()):
        return _mutate(raw, data)
    b = bytearray(raw)
    offs = _cards(raw)
    name, t = data.draw(st.sampled_from(TEMPLATES))
    for card in (f"TEMPLATE= '{name}'", f"TEMPLVER= {t.version}"):
        off = data.draw(st.sampled_from(offs))
        b[off : off + 80] = card.ljust(80).encode()
    return bytes(b)


def _only(errors, call, *args):
    try:
        return call(*args)
    except errors:
        return None


@pytest.mark.parametrize("name", sorted(SEEDS))
@settings(max_examples=30 * SCALE, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_files_through_the_validating_reader_raise_only_our_errors(name, data, tmp_path):
    path = tmp_path / name
    path.write_bytes(_mutate_templated(SEEDS[name], data))
    f = _only(FitsError, open_product, path)
    if f is not None:
        for info in f.hdus:
            if info.xtension == "BINTABLE":
                _only(FitsError, f.table, info.index)
            elif info.xtension in ("PRIMARY", "IMAGE"):
                _only(FitsError, f.image, info.index)
    _only(FitsError, Product.read, path)
    # the validator on every HDU that reads, checksums aside
    f = _only(FitsError, FitsFile, path)
    for info in (f.hdus if f is not None else []):
        reader = f.table if info.xtension == "BINTABLE" else f.image if info.xtension in ("PRIMARY", "IMAGE") else None
        hdu = _only(FitsError, reader, info.index) if reader else None
        if hdu is not None:
            _only(TemplateError, validate_hdu, hdu, f"{path} HDU {info.index}")
    FUZZED["inputs"] += 1


@pytest.fixture(scope="module")
def small_archive(tmp_path_factory):
    """The sample archive without its event files (the index readers never open them)."""
    root = tmp_path_factory.mktemp("fuzz") / "archive"
    shutil.copytree(SIM, root, ignore=shutil.ignore_patterns("isgri_events.fits", "*.json"))
    return root


ARCHIVE_READERS = {
    # seed: (reader(archive root, path), the errors it documents)
    "GNRL-SCWG-GRP-IDX.fits": (lambda root, p: read_scw_index(p, archive=Archive(root)).select(revolution=665),
                               ArchiveError),
    "ic_master_file.fits": (lambda root, p: read_ic_index(p, root).select("isgri", "ISGR-GAIN-MOD", 3005.5), ICError),
    "isgr_gain_mod_r0665.fits": (lambda root, p: scan_ic_tree(root / "ic").select("isgri", "ISGR-GAIN-MOD", 3005.5),
                                 ICError),
    "time_correlation.fits": (lambda root, p: read_time_correlation(p).obt_to_ijd(179866162737575), ArchiveError),
    "swg.fits": (lambda root, p: (read_scw_info(Archive(root), SCW), build_scw_index(Archive(root), write=False)),
                 ArchiveError),
}


@pytest.mark.parametrize("name", sorted(ARCHIVE_READERS))
@settings(max_examples=40 * SCALE, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_archive_files_raise_only_the_errors_their_readers_document(name, data, small_archive):
    reader, errors = ARCHIVE_READERS[name]
    path = small_archive / SIM_FILES[name]
    original = path.read_bytes()
    path.write_bytes(_mutate_templated(SEEDS[name], data))
    try:
        _only(errors, reader, small_archive, path)
    finally:
        path.write_bytes(original)
    FUZZED["inputs"] += 1


def test_the_unmutated_seeds_read(small_archive):
    """The control: every seed reads without error through its reader (or, for the real OSA
    products whose checksums went stale after an edit, fails on exactly that)."""
    for name in SIM_FILES:
        Product.read(small_archive / SIM_FILES[name])
    for name, (reader, _) in ARCHIVE_READERS.items():
        reader(small_archive, small_archive / SIM_FILES[name])
    for name in OSA_PRODUCTS:
        with pytest.raises(FitsError, match="checksum verification failed"):
            Product.read(REF / name)
        assert FitsFile(REF / name).table(1).nrows > 0


def teardown_module(module):
    print(f"\nfuzzed inputs: {FUZZED['inputs']}")
