"""isdc: science-window processing for the INTEGRAL coded-mask gamma-ray observatory."""
__version__ = "0.1.0"
