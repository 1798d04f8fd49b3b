"""docs/cli.md and docs/data-model.md are generated from the code: they must be up to date."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture(autouse=True)
def _fixed_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps help text to the terminal width


def test_cli_reference_is_up_to_date():
    from isdc.cli._reference import cli_markdown

    assert (DOCS / "cli.md").read_text() == cli_markdown() + "\n", \
        "docs/cli.md is stale: run COLUMNS=100 python -m isdc.cli._reference docs"


def test_data_model_is_up_to_date():
    from isdc.cli._reference import data_model_markdown

    assert (DOCS / "data-model.md").read_text() == data_model_markdown() + "\n", \
        "docs/data-model.md is stale: run COLUMNS=100 python -m isdc.cli._reference docs"
