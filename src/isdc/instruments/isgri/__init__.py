"""IBIS/ISGRI: the low-energy CdTe camera of the IBIS coded-mask telescope."""

from isdc.instruments.isgri.geometry import isgri_geometry, isgri_module, isgri_to_gapped

__all__ = ["isgri_geometry", "isgri_to_gapped", "isgri_module"]
