"""The observatory simulator: sky, observation plan, and (with the ISGRI models in
`isdc.instruments.isgri`) the truth every pipeline step is tested against.

- `isdc.sim.spectra`  photon spectra (power law, cut-off power law, Band), mCrab units
- `isdc.sim.sky`      sky model YAML (`Sky.load`, `Sky.default()`), GRBs, reference catalogue
- `isdc.sim.plan`     revolutions, dither patterns, ScW IDs, attitude with the Sun constraint
- `isdc.sim.icfiles`  the simulated instrument's IC files (response, gain model) in FITS

See docs/simulator.md.
"""
