"""Identifiers: every valid ID round-trips, nothing else parses, errors name the bad text."""
import re
from pathlib import PurePosixPath

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from isdc.ids import CONS, NRT, IdError, ObsId, Revolution, ScwId, Version, safe_name

# The documented formats, written independently of isdc.ids (re.ASCII: [0-9] only anyway).
SCW_FORMAT = re.compile(r"[0-9]{11}[01]\.[0-9]{3}", re.ASCII)
REV_FORMAT = re.compile(r"[0-9]{1,4}", re.ASCII)
VERSION_FORMAT = re.compile(r"\.?[0-9]{3}", re.ASCII)
OBS_FORMAT = re.compile(r"[0-9]{8}", re.ASCII)
NAME_FORMAT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+\-]{0,63}", re.ASCII)

# Text that must never become a path component or an identifier.
HOSTILE = [
    "",
    " 066500230010.001",
    "066500230010.001 ",
    "066500230010.001\n",
    "066500230010.001\0",
    "\0",
    "../066500230010.001",
    "066500230010.001/../x",
    "066500230010.001/",
    "..",
    ".",
    ".hidden",
    "a/b",
    "a\\b",
    "a b",
    "a..b",
    "٠٦٦٥٠٠٢٣٠٠١٠.٠٠١",  # Arabic-Indic digits: str.isdigit() and \d accept them
    "０６６５００２３００１０.００１",  # full-width digits
    "066500230010.٠٠١",
    "0" * 100_000,
    "066500230012.001",  # type digit 2
    "066500230010.01",
    "066500230010.0011",
    "066500230010,001",
    "66500230010.001",
    "0665002300100.001",
]

digits = st.text(alphabet="0123456789", min_size=0, max_size=20)
near_miss = st.one_of(
    st.text(),
    st.text(alphabet="0123456789.", max_size=20),
    st.from_regex(r"\A[0-9]{12}\.[0-9]{3}\Z"),  # any type digit 0-9
    st.from_regex(r"\A\s*[0-9]{11}[01]\.[0-9]{3}\s*\Z"),
    st.sampled_from(HOSTILE),
)


def named(exc_info: pytest.ExceptionInfo, text: str) -> bool:
    """The error message shows the bad text (its repr, the first 60 characters if long)."""
    r = repr(text)
    return (r if len(r) <= 80 else r[:60]) in str(exc_info.value)


# ------------------------------------------------------------------------- ScwId

scw_parts = st.tuples(st.integers(0, 9999), st.integers(0, 9999), st.integers(0, 999), st.integers(0, 1),
                      st.integers(0, 999))


@given(scw_parts)
@example((665, 23, 1, 0, 1))
def test_every_valid_scw_id_round_trips(parts):
    rev, pnt, sub, typ, ver = parts
    text = f"{rev:04d}{pnt:04d}{sub:03d}{typ}.{ver:03d}"
    scw = ScwId.parse(text)
    assert str(scw) == text
    assert (scw.revolution, scw.pointing, scw.subnumber, scw.type, scw.version.number) == parts
    assert scw.swid == text[:12]
    assert scw.rev == Revolution(rev) and str(scw.rev) == text[:4]
    assert scw.is_slew == (typ == 1) and scw.sw_type == ("SLEW" if typ else "POINTING")
    assert ScwId.parse(scw) is scw
    assert ScwId.parse(text[:12], version=ver) == scw
    assert ScwId(*parts[:4], Version(ver)) == scw


def test_scw_id_example_from_the_design():
    scw = ScwId.parse("066500230010.001")
    assert (scw.revolution, scw.pointing, scw.subnumber, scw.type) == (665, 23, 1, 0)
    assert scw.version == CONS and scw.version.stream == "CONS"
    assert str(scw.with_version(NRT)) == "066500230010.000"
    assert str(ScwId.parse("066500230010", version="000")) == "066500230010.000"


@given(near_miss)
@example("066500230010.001")
@example("066500230011.999")
def test_only_the_documented_format_parses(text):
    if SCW_FORMAT.fullmatch(text):
        assert str(ScwId.parse(text)) == text
    else:
        with pytest.raises(IdError) as err:
            ScwId.parse(text)
        assert named(err, text)


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_scw_ids_are_refused_naming_the_text(text):
    with pytest.raises(IdError) as err:
        ScwId.parse(text)
    assert named(err, text)
    assert len(str(err.value)) < 400  # a long input does not make a long message


def test_scw_id_without_version_needs_one_and_versions_must_agree():
    with pytest.raises(IdError, match=r"'066500230010' has no version"):
        ScwId.parse("066500230010")
    with pytest.raises(IdError, match="carries version 001, but version 0 was asked for"):
        ScwId.parse("066500230010.001", version=0)
    with pytest.raises(IdError, match="must be a string"):
        ScwId.parse(66500230010)  # an int loses the leading zero: refuse it
    with pytest.raises(IdError, match="ScW type must be an integer 0..1, got 2"):
        ScwId(665, 23, 1, 2)
    with pytest.raises(IdError, match="revolution"):
        ScwId(True, 23, 1, 0)


# ------------------------------------------------------------------------- Revolution, Version

@given(st.integers(0, 9999))
def test_every_revolution_round_trips(n):
    rev = Revolution(n)
    assert str(rev) == f"{n:04d}"
    assert Revolution.parse(str(rev)) == rev == Revolution.parse(n) == Revolution.parse(rev)


@given(st.one_of(st.text(), digits, st.sampled_from(HOSTILE)))
@example("0665")
@example("7")
def test_revolution_parses_only_one_to_four_ascii_digits(text):
    if REV_FORMAT.fullmatch(text):
        assert Revolution.parse(text).number == int(text)
    else:
        with pytest.raises(IdError) as err:
            Revolution.parse(text)
        assert named(err, text)


@pytest.mark.parametrize("bad", [-1, 10000, True, 665.0, None])
def test_revolution_refuses_numbers_out_of_range_and_non_integers(bad):
    with pytest.raises(IdError) as err:
        Revolution.parse(bad)
    assert repr(bad) in str(err.value)


@given(st.integers(0, 999))
def test_every_version_round_trips(n):
    v = Version(n)
    assert str(v) == f"{n:03d}"
    assert Version.parse(str(v)) == v == Version.parse("." + str(v)) == Version.parse(n)
    assert v.stream == {0: "NRT", 1: "CONS"}.get(n, "OTHER")


@given(st.one_of(st.text(), digits, st.sampled_from(HOSTILE)))
@example(".001")
@example("..001")
def test_version_parses_only_three_ascii_digits(text):
    if VERSION_FORMAT.fullmatch(text):
        assert Version.parse(text).number == int(text.lstrip("."))
    else:
        with pytest.raises(IdError) as err:
            Version.parse(text)
        assert named(err, text)


@pytest.mark.parametrize("bad", [-1, 1000, True, 1.0])
def test_version_refuses_numbers_out_of_range_and_non_integers(bad):
    with pytest.raises(IdError):
        Version.parse(bad)


# ------------------------------------------------------------------------- ObsId

@given(st.from_regex(r"\A[0-9]{8}\Z"))
def test_every_obs_id_round_trips(text):
    obs = ObsId.parse(text)
    assert str(obs) == text and ObsId.parse(obs) is obs
    assert (obs.ao, obs.proposal, obs.observation) == (int(text[:2]), int(text[2:6]), int(text[6:]))
    assert obs.is_user_group == text.startswith("99")


@given(st.one_of(st.text(), digits, st.sampled_from(HOSTILE)))
def test_obs_id_parses_only_eight_ascii_digits(text):
    if OBS_FORMAT.fullmatch(text):
        assert str(ObsId.parse(text)) == text
    else:
        with pytest.raises(IdError) as err:
            ObsId.parse(text)
        assert named(err, text)


def test_obs_id_refuses_an_int():
    with pytest.raises(IdError, match="22000100"):
        ObsId(22000100)


# ------------------------------------------------------------------------- safe_name

FORBIDDEN = ("/", "\\", "..", "\0", " ", "\t", "\n")


@given(st.one_of(st.text(), st.from_regex(r"\A[A-Za-z0-9_+\-./ ]{0,70}\Z"), st.sampled_from(HOSTILE)))
@example("crab_2003+rev0044")
@example("-rf")
@example("a" * 64)
@example("a" * 65)
def test_safe_name_accepts_only_plain_names(text):
    if NAME_FORMAT.fullmatch(text):
        assert safe_name(text) == text
        # ... and such a name is one harmless path component
        assert not any(bad in text for bad in FORBIDDEN) and not text.startswith((".", "-"))
        assert PurePosixPath(text).name == text and len(text) <= 64
    else:
        with pytest.raises(IdError) as err:
            safe_name(text, what="OSA output name")
        assert named(err, text) and "OSA output name" in str(err.value)


@pytest.mark.parametrize("bad", ["a/b", "a\\b", "a..b", "..", ".a", "a\0", "a b", " a", "a\n", "é", "a.b", None, 7])
def test_safe_name_refuses_separators_dots_nul_spaces_and_non_text(bad):
    with pytest.raises(IdError) as err:
        safe_name(bad)
    assert repr(bad) in str(err.value)
