"""Pipeline layer: luigi tasks keyed by data IDs (ScW, observation group) that declare their
inputs and outputs as data, read them, call the algorithms and write products."""
