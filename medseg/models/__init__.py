"""Segmentation networks and their losses; importing this package registers them."""

from medseg.models import losses, unet3d, vnet  # noqa: F401  (registers MODELS and LOSSES)
