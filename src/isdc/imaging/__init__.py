"""Generic coded-mask imaging: mask patterns, telescope geometry, pixel illumination
fractions, FFT decoding into sky images, source fits and sky projection.

Pure numpy/scipy algorithms (no files, no configuration objects); conventions and
equations in docs/imaging.md.  Main entry points::

    from isdc.imaging.geometry import CodedMaskGeometry
    from isdc.imaging.pif import pif, response, cos_theta
    from isdc.imaging.decode import Decoder, SkyImages, model_shadowgram, fit_sources
    from isdc.imaging.projection import Attitude, SkyGrid, sky_wcs, radec_to_tan, tan_to_radec
"""
