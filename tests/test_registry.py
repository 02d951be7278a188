import pytest

from polymodal import registry


@registry.register("_test", "thing")
class Thing:
    def __init__(self, size: int, width: int = 4, scale: float = 1.0) -> None:
        self.size, self.width, self.scale = size, width, scale


def test_build_injects_only_accepted_kwargs():
    obj = registry.build("_test", {"type": "thing", "width": 8}, size=3, unused=1)
    assert (obj.size, obj.width, obj.scale) == (3, 8, 1.0)


def test_unknown_name_lists_choices():
    with pytest.raises(registry.RegistryError, match="valid choices: thing"):
        registry.get("_test", "nope")


def test_wrong_kwarg_names_key_and_options():
    with pytest.raises(registry.RegistryError, match=r"'colour'.*valid options: scale, width"):
        registry.check_kwargs("_test", "thing", {"colour": 1}, injected=["size"], where="x")


def test_defaults_skip_injected():
    assert registry.defaults(Thing, injected=["size"]) == {"width": 4, "scale": 1.0}


def test_double_registration_refused():
    with pytest.raises(registry.RegistryError):
        registry.register("_test", "thing")(type("Other", (), {}))
