"""Where the declarative data shipped with isdc live: templates, pipeline configs, IC files.

In a wheel they are inside the package (`isdc/_data/…`); in a source checkout (editable
install, tests) they are the top-level folders `templates/`, `pipelines/`, `ic_files/`.
"""
from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Folder of shipped data `name` ('templates', 'pipelines' or 'ic_files')."""
    if name not in ("templates", "pipelines", "ic_files"):
        raise ValueError(f"unknown data folder {name!r}")
    packaged = _PKG / "_data" / name
    if packaged.is_dir():
        return packaged
    checkout = _PKG.parent.parent / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"isdc data folder {name!r} not found in {packaged} or {checkout}")
