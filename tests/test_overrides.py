from pmargin.overrides import deep_merge


def test_nested_and_dotted_overrides_merge_without_touching_the_base():
    base = {"a": {"b": 1, "c": {"d": 2}}, "e": [1, 2]}
    out = deep_merge(base, {"a.c.d": 5, "a": {"b": 3}, "f.g": 7})
    assert out == {"a": {"b": 3, "c": {"d": 5}}, "e": [1, 2], "f": {"g": 7}}
    assert base == {"a": {"b": 1, "c": {"d": 2}}, "e": [1, 2]}
