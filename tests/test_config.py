"""Pipeline configuration: layered, typed, strict."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from isdc.pipeline.config import ConfigError, LEVELS, describe, load_config, parse_bands, parse_levels


def test_streams_load_and_differ_only_in_parameters():
    nrt, cons, osa = (load_config(s) for s in ("nrt", "cons", "osa"))
    assert (nrt["stream"], cons["stream"], osa["stream"]) == ("nrt", "cons", "osa")
    assert nrt["levels"] == ["COR", "GTI", "DEAD", "BIN", "BKG", "IMA"]
    assert cons["levels"] == list(LEVELS)
    assert set(nrt) == set(cons) == set(osa)  # same schema, different values


def test_user_file_and_overrides_layer_in_order(tmp_path):
    f = tmp_path / "my.yaml"
    f.write_text("isgri:\n  bands: [[25, 80]]\n  ima: {detection_threshold: 7}\n")
    cfg = load_config("osa", f)
    assert cfg["isgri"]["bands"] == [[25.0, 80.0]] and cfg["isgri"]["ima"]["detection_threshold"] == 7.0
    cfg = load_config("osa", f, {"isgri.ima.detection_threshold": "5.5", "levels": "COR..BIN"})
    assert cfg["isgri"]["ima"]["detection_threshold"] == 5.5 and cfg["levels"] == ["COR", "GTI", "DEAD", "BIN"]


@pytest.mark.parametrize("text, message", [
    ("isgri:\n  bandz: [[20, 40]]\n", "unknown key 'isgri.bandz'"),
    ("isgri:\n  bands: [[20.3, 40]]\n", "not a multiple of 0.5 keV"),
    ("isgri:\n  bands: [[40, 20]]\n", "need 0 < E1 < E2"),
    ("isgri:\n  ima: {detection_threshold: -1}\n", "must be > 0"),
    ("isgri:\n  cor: {rise_time_min: 4.5}\n", "expected int"),
    ("stream: weekly\n", "not one of"),
    ("- a list\n", "must be a mapping"),
])
def test_bad_user_files_are_refused_naming_key_and_file(tmp_path, text, message):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message) as e:
        load_config("osa", f)
    assert "bad.yaml" in str(e.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config("osa", tmp_path / "none.yaml")


@given(st.lists(st.tuples(st.integers(1, 4000), st.integers(1, 4000)).filter(lambda t: t[0] < t[1]), min_size=1,
                max_size=6))
def test_band_strings_round_trip(bands):
    text = ",".join(f"{a / 2:g}-{b / 2:g}" for a, b in bands)
    assert parse_bands(text) == [[a / 2, b / 2] for a, b in bands]


@given(st.text(max_size=30))
def test_levels_parser_only_accepts_known_levels(text):
    try:
        levels = parse_levels(text)
    except ConfigError:
        return
    assert all(lv in LEVELS for lv in levels)
    assert levels == sorted(levels, key=LEVELS.index)


def test_every_option_is_documented():
    lines = describe()
    assert any(line.startswith("isgri.bands (bands") for line in lines)
    assert all(": " in line and not line.endswith(": ") for line in lines)
