from pathlib import Path

import pytest

from medseg.cvlibs.registry import Registry


def test_register_forms_and_lookup():
    reg = Registry("things")

    @reg.register
    class Plain:
        pass

    @reg.register()
    class Called:
        pass

    @reg.register(name="Alias")
    class Named:
        pass

    reg.register(Plain, name="Second")
    assert reg.get("Plain") is Plain
    assert reg.get("Called") is Called
    assert reg.get("Alias") is Named
    assert reg.get("Second") is Plain
    assert reg.names == ["Alias", "Called", "Plain", "Second"]
    assert "Plain" in reg and "plain" not in reg and 3 not in reg


def test_duplicate_name_names_the_first_owner():
    reg = Registry("things")

    @reg.register()
    class Thing:
        pass

    with pytest.raises(KeyError, match=r"already registered in things by .*test_registry.*Thing"):
        reg.register(Thing)


def test_unknown_name_suggests_closest_and_lists_all():
    reg = Registry("models")
    for name in ("VNet", "UNet3D", "VNetDeepSup"):
        reg.register(type(name, (), {}), name=name)
    with pytest.raises(KeyError) as err:
        reg.get("vnett")
    message = str(err.value)
    assert "Did you mean 'VNet'" in message
    assert "UNet3D, VNet, VNetDeepSup" in message


def test_case_insensitive_registry():
    reg = Registry("optimizers", case_insensitive=True)
    reg.register(lambda: "sgd", name="sgd")
    assert reg.get("SGD")() == "sgd"
    with pytest.raises(KeyError, match="already registered"):
        reg.register(lambda: None, name="Sgd")


def test_registries_import_their_owner_package_on_first_lookup():
    """No import cycle and no registration call: building imports the owner package lazily."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from medseg.cvlibs import LOSSES, MODELS, Config\n"
        "assert 'torch' not in sys.modules, 'importing the config layer imported torch'\n"
        "model = MODELS.build({'type': 'UNet3D', 'in_channels': 1, 'num_classes': 2,"
        " 'base_channels': 4}, key='model')\n"
        "assert type(model).__module__ == 'medseg.models.unet3d'\n"
        "assert 'DiceLoss' in LOSSES\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
