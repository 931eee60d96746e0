"""Config loading and the registries that turn `type:` strings into objects."""

from medseg.cvlibs.config import Config
from medseg.cvlibs.errors import ConfigError
from medseg.cvlibs.registry import (
    ALL_REGISTRIES,
    DATASETS,
    LOSSES,
    LR_SCHEDULERS,
    MODELS,
    OPTIMIZERS,
    TRANSFORMS,
    Registry,
)

__all__ = [
    "ALL_REGISTRIES",
    "DATASETS",
    "LOSSES",
    "LR_SCHEDULERS",
    "MODELS",
    "OPTIMIZERS",
    "TRANSFORMS",
    "Config",
    "ConfigError",
    "Registry",
]
