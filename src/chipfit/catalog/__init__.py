"""The hardware catalog: sourced figures for CPUs, GPUs, TPUs, ASICs, FPGAs, edge chips and more."""

from chipfit.catalog.loader import Catalog, load_catalog
from chipfit.catalog.resolve import Resolved, hardware_named, resolve_hardware
from chipfit.catalog.schema import Figure, Hardware, Instance

__all__ = ["load_catalog", "Catalog", "Hardware", "Instance", "Figure", "Resolved", "resolve_hardware",
           "hardware_named"]
