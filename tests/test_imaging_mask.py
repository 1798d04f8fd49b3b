"""MURA patterns: definition, autocorrelation property, cyclic replication, IBIS mask."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from isdc.imaging.mask import is_prime, mura_decoding, mura_pattern, quadratic_residues, replicate
from isdc.instruments.isgri.geometry import IBIS_MASK_ORIGIN, ibis_mask

MURA_ORDERS = [5, 13, 17, 29, 37, 41, 53]


def periodic_correlation(a, g):
    """sum_ij a[i, j] g[(i + k) mod p, (j + l) mod p] by FFT (exact for integers < 2^40)."""
    fa = np.fft.fft2(a)
    fg = np.fft.fft2(g)
    return np.rint(np.real(np.fft.ifft2(np.conj(fa) * fg))).astype(np.int64)


def test_primes_and_residues():
    assert [n for n in range(30) if is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
    # quadratic residues mod 13: 1, 4, 9, 3, 12, 10
    assert set(np.flatnonzero(quadratic_residues(13))) == {1, 3, 4, 9, 10, 12}


@pytest.mark.parametrize("p", MURA_ORDERS)
def test_mura_autocorrelation_is_delta_with_flat_sidelobes(p):
    a = mura_pattern(p)
    g = mura_decoding(a)
    c = periodic_correlation(a.astype(np.int64), g.astype(np.int64))
    assert c[0, 0] == (p * p - 1) // 2
    c[0, 0] = 0
    assert np.all(c == 0)


@pytest.mark.parametrize("p", MURA_ORDERS)
def test_mura_definition_and_open_fraction(p):
    a = mura_pattern(p)
    assert a.sum() == (p * p - 1) // 2
    assert np.all(a[0] == 0) and np.all(a[1:, 0] == 1)
    # (-1) is a quadratic residue for p = 1 mod 4: the pattern is symmetric under i -> -i
    assert np.array_equal(a[1:, 1:], a[1:, 1:][::-1, ::-1])


@pytest.mark.parametrize("p", [2, 3, 7, 11, 15, 21, 49])
def test_mura_rejects_bad_orders(p):
    with pytest.raises(ValueError, match="prime"):
        mura_pattern(p)


@given(st.sampled_from([5, 13, 17]), st.integers(1, 60), st.integers(1, 60), st.integers(-80, 80), st.integers(-80, 80))
def test_replication_is_cyclic(p, n0, n1, o0, o1):
    a = mura_pattern(p)
    m = replicate(a, (n0, n1), (o0, o1))
    assert m.shape == (n0, n1)
    i, j = np.meshgrid(np.arange(n0), np.arange(n1), indexing="ij")
    assert np.array_equal(m, a[(i - o0) % p, (j - o1) % p])


def test_ibis_mask():
    m = ibis_mask()
    assert m.shape == (95, 95)
    o = IBIS_MASK_ORIGIN[0]
    # the central 53 x 53 elements are the basic pattern; the borders repeat it with period 53
    assert np.array_equal(m[o:o + 53, o:o + 53], mura_pattern(53))
    assert np.array_equal(m[:95 - 53], m[53:])
    assert np.array_equal(m[:, :95 - 53], m[:, 53:])
    assert abs(m.mean() - 0.5) < 0.002  # ~50% open (0.5003)
