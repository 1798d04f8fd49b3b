"""Instrument packages (one per instrument: geometry, instrument-specific algorithms)."""
