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
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
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
