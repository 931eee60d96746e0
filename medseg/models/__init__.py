"""Segmentation networks and their losses; importing this package registers them."""

from medseg.models import losses, resenc_unet, unet3d, vnet  # noqa: F401  (registers)
