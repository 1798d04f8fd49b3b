"""Coded-mask patterns: MURA basic patterns, their decoding arrays, cyclic replication.

The Modified Uniformly Redundant Array (MURA) of prime order ``p`` with ``p = 1 (mod 4)``
is the pattern of Gottesman & Fenimore (1989, Applied Optics 28, 4344)::

    C_i = +1 if i is a quadratic residue modulo p (i = 1..p-1), else -1
    A[0, j] = 0                    for all j          (first row closed)
    A[i, 0] = 1                    for i != 0         (first column open)
    A[i, j] = 1 if C_i C_j = +1    else 0             (i, j != 0)

and its decoding array ``G = 2A - 1`` except ``G[0, 0] = +1``.  The periodic
cross-correlation ``A (x) G`` is ``(p^2 - 1)/2`` at zero lag and exactly 0 at every other
lag: a MURA images a point source without sidelobes when the detector sees one full
cycle of the pattern, which is why coded-mask telescopes replicate the basic pattern
cyclically (IBIS: 53x53 basic pattern, 95x95 mask elements).

Arrays are numpy ``[row, col]``; 1 means open (transparent), 0 closed (opaque).
"""

from __future__ import annotations

import numpy as np

__all__ = ["is_prime", "quadratic_residues", "mura_pattern", "mura_decoding", "replicate"]


def is_prime(n: int) -> bool:
    """True if the integer ``n`` is prime."""
    n = int(n)
    if n < 2:
        return False
    if n < 4:
        return True
    if n % 2 == 0:
        return False
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


def quadratic_residues(p: int) -> np.ndarray:
    """Boolean array ``q`` of length ``p``: ``q[i]`` is True if ``i`` (1..p-1) is a
    quadratic residue modulo ``p``; ``q[0]`` is False."""
    q = np.zeros(p, dtype=bool)
    q[(np.arange(1, p, dtype=np.int64) ** 2) % p] = True
    q[0] = False
    return q


def _check_order(p: int) -> int:
    p = int(p)
    if not is_prime(p) or p % 4 != 1:
        raise ValueError(f"MURA order must be a prime p with p = 1 (mod 4), got {p}")
    return p


def mura_pattern(p: int) -> np.ndarray:
    """MURA basic pattern of prime order ``p`` (``p = 1 mod 4``).

    Returns
    -------
    numpy.ndarray
        uint8 array, shape (p, p), 1 = open element, 0 = closed; ``(p^2 - 1)/2`` open.
    """
    p = _check_order(p)
    c = np.where(quadratic_residues(p), 1, -1)
    a = (np.outer(c, c) == 1).astype(np.uint8)
    a[0, :] = 0
    a[1:, 0] = 1
    return a


def mura_decoding(pattern: np.ndarray) -> np.ndarray:
    """Decoding array ``G`` of a MURA basic pattern: ``+1`` where open, ``-1`` where
    closed, and ``G[0, 0] = +1``.

    Parameters
    ----------
    pattern : numpy.ndarray
        MURA basic pattern, shape (p, p), as made by :func:`mura_pattern`.

    Returns
    -------
    numpy.ndarray
        int8 array, shape (p, p).
    """
    a = np.asarray(pattern)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"MURA pattern must be square 2-D, got shape {a.shape}")
    g = np.where(a > 0, 1, -1).astype(np.int8)
    g[0, 0] = 1
    return g


def replicate(pattern: np.ndarray, shape: tuple[int, int], origin: tuple[int, int]) -> np.ndarray:
    """Cyclic replication of a basic pattern to a mask of ``shape`` elements.

    ``mask[i, j] = pattern[(i - origin[0]) mod p0, (j - origin[1]) mod p1]``: element
    ``origin`` of the mask holds element (0, 0) of the basic pattern.

    Parameters
    ----------
    pattern : numpy.ndarray
        Basic pattern, shape (p0, p1).
    shape : (int, int)
        Mask size in elements (rows, cols).
    origin : (int, int)
        Mask element (row, col) where the basic pattern's element (0, 0) sits.

    Returns
    -------
    numpy.ndarray
        Array of ``pattern``'s dtype, shape ``shape``.
    """
    pat = np.asarray(pattern)
    if pat.ndim != 2:
        raise ValueError(f"pattern must be 2-D, got shape {pat.shape}")
    n0, n1 = (int(s) for s in shape)
    if n0 < 1 or n1 < 1:
        raise ValueError(f"mask shape must be positive, got {shape}")
    rows = (np.arange(n0) - int(origin[0])) % pat.shape[0]
    cols = (np.arange(n1) - int(origin[1])) % pat.shape[1]
    return pat[np.ix_(rows, cols)].copy()
