"""The `>>>` examples in the config, registry and vocabulary docstrings run and hold."""

import doctest

import pytest

import medseg.cvlibs.config
import medseg.cvlibs.errors
import medseg.cvlibs.registry
import medseg.cvlibs.sources
import medseg.utils.vocabulary

MODULES = [
    medseg.cvlibs.config,
    medseg.cvlibs.errors,
    medseg.cvlibs.registry,
    medseg.cvlibs.sources,
    medseg.utils.vocabulary,
]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0, f"{module.__name__} has no examples"
    assert result.failed == 0
