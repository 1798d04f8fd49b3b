"""OGIP spectra, responses and light curves (HDUs made from their templates).

DESIGN §7: spectra are OGIP PHA (type I per source, type II for all sources of a science
window) in count rates with STAT_ERR, QUALITY, GROUPING, EXPOSURE and *named* response
files (Sherpa silently fits garbage when ANCRFILE or EXPOSURE is missing); the RMF is
`MATRIX` + `EBOUNDS` with TLMIN on F_CHAN; the ARF `SPECRESP` is on the RMF's energy
grid; light curves are OGIP `RATE` tables with a `GTI` extension. Channels are numbered
from 0 (as OSA's ISGRI spectra; EBOUNDS and TLMIN say so to every reader).

The functions take plain arrays and keyword values and return `Table`s validated against
the templates (`ISGR-EVTS-SPE`, `ISGR-PHA2-SPE`, `ISGR-RMF.-SPE`, `ISGR-EBDS-SPE`,
`ISGR-ARF.-SPE`, `ISGR-SRC.-LCR`, `ISGR-GTI.-LCR`).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from isdc.dal.fitsfile import Table
from isdc.dal.templates import TemplateError, get as get_template

__all__ = ["spectrum_tables", "rmf_tables", "arf_table", "light_curve_table", "gti_table", "FIRST_CHANNEL"]

FIRST_CHANNEL = 0
"""Number of the first channel of our spectra and responses."""

_SOURCE_KEYS = ("NAME", "SOURCEID", "RA_OBJ", "DEC_OBJ")


def spectrum_tables(rates: np.ndarray, errors: np.ndarray, quality: np.ndarray, sources: Sequence[Mapping],
                    **keywords) -> list[Table]:
    """The type II table (all sources) followed by one type I table per source.

    Parameters
    ----------
    rates, errors : numpy.ndarray
        (n_src, n_chan) count rates and 1-sigma errors, counts/s.
    quality : numpy.ndarray
        (n_chan,) or (n_src, n_chan): 0 good, 1 bad; bad channels get RATE 0, STAT_ERR 0.
    sources : sequence of mappings
        Per source: NAME, SOURCEID, RA_OBJ, DEC_OBJ.
    keywords
        EXPOSURE, ONTIME, DEADC, TSTART, TSTOP, REVOL, SWID, RESPFILE, ANCRFILE (required
        by the templates) and any others.
    """
    r = np.atleast_2d(np.asarray(rates, dtype=np.float64))
    e = np.atleast_2d(np.asarray(errors, dtype=np.float64))
    n_src, n_chan = r.shape
    if e.shape != r.shape or len(sources) != n_src:
        raise TemplateError(f"spectra: rates {r.shape}, errors {e.shape} and {len(sources)} sources disagree")
    q = np.broadcast_to(np.asarray(quality, dtype=np.int16), r.shape).copy()
    q[~(np.isfinite(r) & np.isfinite(e) & (e > 0))] = 1
    r = np.where(q == 0, r, 0.0)
    e = np.where(q == 0, e, 0.0)
    for k in ("RESPFILE", "ANCRFILE", "EXPOSURE"):
        v = keywords.get(k)
        if v is None or (isinstance(v, str) and v.strip().upper() in ("", "NONE")):
            raise TemplateError(f"spectra: {k} must be given (DESIGN §7: readers fit garbage without it)")
    if not float(keywords["EXPOSURE"]) > 0:
        raise TemplateError(f"spectra: EXPOSURE must be > 0, got {keywords['EXPOSURE']}")
    chan = np.arange(FIRST_CHANNEL, FIRST_CHANNEL + n_chan, dtype=np.int16)
    common = dict(keywords, DETCHANS=n_chan)
    last = FIRST_CHANNEL + n_chan - 1
    ones = np.ones(n_chan, dtype=np.int16)
    t2 = get_template("ISGR-PHA2-SPE")
    type2 = t2.table({
        "SPEC_NUM": np.arange(1, n_src + 1, dtype=np.int16),
        "SOURCEID": np.array([str(s["SOURCEID"]) for s in sources], dtype="U16") if n_src else np.zeros(0, "U1"),
        "NAME": np.array([str(s["NAME"]) for s in sources], dtype="U50") if n_src else np.zeros(0, "U1"),
        "RA_OBJ": np.array([float(s["RA_OBJ"]) for s in sources]),
        "DEC_OBJ": np.array([float(s["DEC_OBJ"]) for s in sources]),
        "CHANNEL": np.broadcast_to(chan, (n_src, n_chan)), "RATE": r, "STAT_ERR": e,
        "SYS_ERR": np.zeros((n_src, n_chan)), "QUALITY": q, "GROUPING": np.broadcast_to(ones, (n_src, n_chan)),
    }, TLMIN6=FIRST_CHANNEL, TLMAX6=last, **common)
    t1 = get_template("ISGR-EVTS-SPE")
    out = [type2]
    for i, s in enumerate(sources):
        kw = dict(common, **{k: s[k] for k in _SOURCE_KEYS}, EXTVER=i + 1)
        kw["NAME"], kw["SOURCEID"] = str(kw["NAME"]), str(kw["SOURCEID"])
        kw["RA_OBJ"], kw["DEC_OBJ"] = float(kw["RA_OBJ"]), float(kw["DEC_OBJ"])
        out.append(t1.table({"CHANNEL": chan, "RATE": r[i], "STAT_ERR": e[i], "SYS_ERR": np.zeros(n_chan),
                             "QUALITY": q[i], "GROUPING": ones}, TLMIN1=FIRST_CHANNEL, TLMAX1=last, **kw))
    return out


def rmf_tables(energ_lo, energ_hi, matrix, e_min, e_max, **keywords) -> list[Table]:
    """`MATRIX` (redistribution, fixed-length rows) and `EBOUNDS` tables of an RMF file.

    matrix : (n_e, n_chan); keywords: RSPFILE, RSPVERS (the IC response used).
    """
    m = np.asarray(matrix, dtype=np.float64)
    n_e, n_chan = m.shape
    if np.shape(energ_lo) != (n_e,) or np.shape(e_min) != (n_chan,):
        raise TemplateError(f"RMF: matrix {m.shape} does not match {np.shape(energ_lo)} energies, "
                            f"{np.shape(e_min)} channels")
    last = FIRST_CHANNEL + n_chan - 1
    mat = get_template("ISGR-RMF.-SPE").table({
        "ENERG_LO": np.asarray(energ_lo), "ENERG_HI": np.asarray(energ_hi), "N_GRP": np.ones(n_e, np.int16),
        "F_CHAN": np.full(n_e, FIRST_CHANNEL, np.int32), "N_CHAN": np.full(n_e, n_chan, np.int32), "MATRIX": m,
    }, DETCHANS=n_chan, TLMIN4=FIRST_CHANNEL, TLMAX4=last, NUMGRP=n_e, NUMELT=n_e * n_chan, **keywords)
    ebd = get_template("ISGR-EBDS-SPE").table({
        "CHANNEL": np.arange(FIRST_CHANNEL, last + 1, dtype=np.int16), "E_MIN": np.asarray(e_min),
        "E_MAX": np.asarray(e_max)}, DETCHANS=n_chan, TLMIN1=FIRST_CHANNEL, TLMAX1=last)
    return [mat, ebd]


def arf_table(energ_lo, energ_hi, specresp, **keywords) -> Table:
    """`SPECRESP` table of an ARF file (cm2 per photon energy bin); keywords RSPFILE, RSPVERS."""
    return get_template("ISGR-ARF.-SPE").table({"ENERG_LO": np.asarray(energ_lo), "ENERG_HI": np.asarray(energ_hi),
                                                "SPECRESP": np.asarray(specresp)}, **keywords)


def light_curve_table(time, rate, error, fracexp, **keywords) -> Table:
    """One `ISGR-SRC.-LCR` (OGIP RATE) table.

    time : bin centres (IJD); rate, error : counts/s; fracexp : good fraction of each bin;
    keywords: TIMEDEL (d), TSTART, TSTOP, ONTIME, EXPOSURE, E_MIN, E_MAX, REVOL, SWID,
    NAME, SOURCEID, RA_OBJ, DEC_OBJ (and EXTVER).
    """
    return get_template("ISGR-SRC.-LCR").table({"TIME": np.asarray(time), "RATE": np.asarray(rate),
                                                "ERROR": np.asarray(error), "FRACEXP": np.asarray(fracexp)},
                                               **keywords)


def gti_table(start, stop, tstart: float, tstop: float) -> Table:
    """OGIP `GTI` table (IJD)."""
    return get_template("ISGR-GTI.-LCR").table({"START": np.asarray(start, dtype=np.float64),
                                                "STOP": np.asarray(stop, dtype=np.float64)},
                                               TSTART=float(tstart), TSTOP=float(tstop))
