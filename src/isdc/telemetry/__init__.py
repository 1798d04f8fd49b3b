"""Telemetry: CCSDS-style source packets of the simulated spacecraft and their reassembly.

`packets`     packet layout, CRC, APIDs, codecs of ISGRI events, HK and ScW marks (pure)
`reassembly`  packets in any order, with duplicates, gaps and corruption -> per-ScW data
              and a record of what was wrong with the stream (pure)

The files (inbox chunks) are handled by `isdc.dal.inbox`; the emission with fault
injection by `isdc.sim.feed`. Layout and fault model: docs/telemetry.md.
"""
