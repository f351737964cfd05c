import pytest

from subdistill.errors import ConfigError, DataError
from subdistill.registry import Registry


def test_register_get_and_list():
    things: Registry[int] = Registry("thing")
    things.register("b", 2)

    @things.register("a")
    def a() -> int:
        return 1

    assert things.get("a") is a and things.get("b") == 2
    assert things.names() == ["a", "b"] and list(things) == ["a", "b"] and len(things) == 2
    assert "a" in things and "c" not in things
    assert things.in_order() == [2, a]
    things.register("b", 2)  # the same entry again (a re-imported plugin) is fine


def test_errors_name_the_kind_the_closest_name_and_the_known_ones():
    things: Registry[int] = Registry("dataset", DataError, "See the docs.")
    things.register("digits", 1)
    with pytest.raises(DataError, match=r"unknown dataset 'digit'\. Did you mean 'digits'\? "
                                        r"Available: digits\. See the docs\."):
        things.get("digit")
    with pytest.raises(DataError, match="already registered"):
        things.register("digits", 2)
    with pytest.raises(DataError, match="non-empty string"):
        things.register("", 3)


def test_long_listings_are_cut():
    things: Registry[int] = Registry("thing")
    for i in range(40):
        things.register(f"t{i:02d}", i)
    with pytest.raises(ConfigError, match=r"\.\.\. \(40 in all\)"):
        things.get("zzz")
