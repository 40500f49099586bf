"""The one parameter-file loader: presets, liquidation settings, any pydantic schema."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

import pmargin
from pmargin.errors import InvalidInput, ParamsError
from pmargin.liquidation._params import SETTINGS
from pmargin.liquidation.cascade import CascadeParams
from pmargin.liquidation.planner import PlannerParams, load_planner_params
from pmargin.models.params import PRESETS, list_presets, load_params, read_preset
from pmargin.paramfiles import load_params_file, read_params_file

SRC = Path(pmargin.__file__).resolve().parent


def _shipped_text(shipped_folder: str, name: str) -> str:
    return (SRC / shipped_folder / name).read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- unknown keys
def test_unknown_preset_key_names_dotted_key_and_nearest_valid_one(tmp_path):
    text = re.sub(r"(?m)^price_range = 0.16", "price_rnage = 0.16",
                  _shipped_text("models/presets", "deribit-pm.toml"), count=1)
    f = tmp_path / "typo.toml"
    f.write_text(text)
    with pytest.raises(ParamsError) as err:
        load_params(f)
    assert err.value.field == "underlyings.BTC.grid.price_rnage"
    assert "did you mean 'price_range'" in err.value.reason
    assert str(f) in err.value.reason


def test_unknown_override_key_suggests_the_nearest_valid_key():
    with pytest.raises(ParamsError) as err:
        load_params("deribit-pm", {"underlyings.ETH.vol_shock.uo": 0.3})
    assert err.value.field == "underlyings.ETH.vol_shock.uo"
    assert "did you mean 'up'" in err.value.reason


def test_unknown_top_level_preset_key_is_named():
    with pytest.raises(ParamsError) as err:
        load_params("deribit-sm", {"haircut": {}})
    assert err.value.field == "haircut"
    assert "did you mean 'haircuts'" in err.value.reason


def test_unknown_key_in_a_list_of_tables_is_named_with_its_index(tmp_path):
    text = _shipped_text("liquidation", "bidders.toml").replace(
        "max_fraction = 0.5", "max_fracton = 0.5")
    f = tmp_path / "bidders.toml"
    f.write_text(text)
    from pmargin.liquidation.execution import load_bidders

    with pytest.raises(ParamsError) as err:
        load_bidders(f)
    assert err.value.field == "bidders[1].max_fracton"
    assert "did you mean 'max_fraction'" in err.value.reason


def test_unknown_settings_key_names_the_key_and_the_nearest_valid_one(tmp_path):
    f = tmp_path / "planner.toml"
    f.write_text(_shipped_text("liquidation", "planner.toml").replace("buffer =", "bufer ="))
    with pytest.raises(ParamsError) as err:
        load_planner_params(f)
    assert err.value.field == "bufer"
    assert "did you mean 'buffer'" in err.value.reason


# ----------------------------------------------------------------------------- values from files
@pytest.mark.parametrize(("filename", "key"), [("planner.toml", "buffer"),
                                               ("planner.toml", "penalty_rate"),
                                               ("cascade.toml", "max_rounds"),
                                               ("bidders.toml", "opening_cash")])
def test_a_setting_missing_from_its_file_is_an_error_not_a_code_default(tmp_path, filename, key):
    lines = _shipped_text("liquidation", filename).splitlines()
    kept = [ln for ln in lines if not ln.startswith(f"{key} ")]
    assert len(kept) == len(lines) - 1
    f = tmp_path / filename
    f.write_text("\n".join(kept))
    schema = {"planner.toml": PlannerParams, "cascade.toml": CascadeParams}.get(filename)
    if schema is None:
        from pmargin.liquidation.execution import BiddersParams as schema
    with pytest.raises(ParamsError) as err:
        load_params_file(schema, f, SETTINGS)
    assert err.value.field == key
    assert "required" in err.value.reason


@pytest.mark.parametrize("literal", ["nan", "inf", "-inf"])
def test_non_finite_numbers_in_a_settings_file_are_refused(tmp_path, literal):
    f = tmp_path / "planner.toml"
    f.write_text(re.sub(r"(?m)^buffer = [0-9.]+", f"buffer = {literal}",
                        _shipped_text("liquidation", "planner.toml")))
    with pytest.raises(ParamsError) as err:
        load_planner_params(f)
    assert err.value.field == "buffer"


def test_non_finite_override_in_a_preset_is_refused():
    with pytest.raises(ParamsError) as err:
        load_params("deribit-pm", {"underlyings.BTC.vol_shock.up": math.nan})
    assert err.value.field == "underlyings.BTC.vol_shock.up"


# ----------------------------------------------------------------------------- file errors
def test_toml_syntax_error_names_the_file_and_line(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('name = "x"\nmodel = "portfolio"\nsource = = 3\n')
    with pytest.raises(ParamsError) as err:
        load_params(f)
    assert err.value.field == f"{f}:3"
    assert "TOML" in err.value.reason


@pytest.mark.parametrize("payload", [b"\xff\xfe\x00bad", b"name = \"\xe9t\xe9\"\n",
                                     bytes(range(256))])
def test_non_utf8_or_binary_files_are_params_errors(tmp_path, payload):
    f = tmp_path / "bin.toml"
    f.write_bytes(payload)
    with pytest.raises(ParamsError):
        load_params(f)
    with pytest.raises(ParamsError):
        load_planner_params(f)


def test_missing_file_directory_and_unknown_name(tmp_path):
    with pytest.raises(ParamsError, match="no such file"):
        load_params(tmp_path / "missing.toml")
    with pytest.raises(ParamsError, match="directory"):
        load_params(tmp_path)
    with pytest.raises(ParamsError, match="unknown preset") as err:
        load_params("deribit-p")
    assert "did you mean 'deribit-pm'" in err.value.reason


def test_empty_file_is_a_params_error_naming_a_field(tmp_path):
    f = tmp_path / "empty.toml"
    f.write_text("")
    with pytest.raises(ParamsError) as err:
        load_params(f)
    assert err.value.field == "model"
    with pytest.raises(ParamsError) as err:
        load_planner_params(f)
    assert err.value.field


def test_read_preset_returns_a_fresh_copy():
    a = read_preset("deribit-pm")
    a["name"] = "changed"
    assert read_preset("deribit-pm")["name"] == "deribit-pm"


# ----------------------------------------------------------------------------- any schema (Derive)
class _Inner(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    vol_range_up: float = Field(alias="VOLRANGEUP")


class _Outer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
    name: str
    vol_shock: _Inner = Field(alias="VolShock")
    scenarios: tuple[_Inner, ...] = Field(alias="Scenarios")


def test_any_schema_with_aliases_gets_nearest_key_hints(tmp_path):
    f = tmp_path / "d.toml"
    f.write_text('name = "d"\n[VolShock]\nVOLRANGEUP = 0.1\n[[Scenarios]]\nVOLRANGUP = 1.0\n')
    with pytest.raises(ParamsError) as err:
        load_params_file(_Outer, f, PRESETS)
    assert err.value.field == "Scenarios[0].VOLRANGUP"
    assert "did you mean 'VOLRANGEUP'" in err.value.reason
    ok = load_params_file(_Outer, f, PRESETS, {"Scenarios": [{"VOLRANGEUP": 1.0}]})
    assert ok.scenarios[0].vol_range_up == 1.0


def test_lax_schema_text_nan_never_loads(tmp_path):
    # A schema that allows NaN would coerce the text "nan": the loader checks what it loaded.
    f = tmp_path / "d.toml"
    f.write_text('name = "d"\n[VolShock]\nVOLRANGEUP = "nan"\n[[Scenarios]]\nVOLRANGEUP = 1\n')
    with pytest.raises(ParamsError) as err:
        load_params_file(_Outer, f, PRESETS)
    assert err.value.field == "vol_shock.vol_range_up"


def test_only_the_parameter_file_loader_parses_toml():
    readers = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                     if re.search(r"^\s*import tomllib|^\s*from tomllib", p.read_text(), re.M))
    # The Derive model is being moved to its own folder; it is to call pmargin.paramfiles too.
    assert "paramfiles.py" in readers
    others = [r for r in readers if r != "paramfiles.py"]
    assert others == []


# ----------------------------------------------------------------------------- properties
_scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10**300)
            | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8)
            | st.sampled_from(["nan", "inf", "up", "exp", "maintenance", "1e400", ""]))
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=6) | st.sampled_from(["up", "grid", "weight"]),
                      inner, max_size=3),
    max_leaves=8,
)


def _keys(data: Any, prefix: str = "") -> list[str]:
    out = []
    if isinstance(data, dict):
        for k, v in data.items():
            path = f"{prefix}.{k}" if prefix else k
            out.append(path)
            out.extend(_keys(v, path))
    return out


_PRESET_KEYS = sorted({k for name in list_presets() if name != "derive-pm2"
                       for k in _keys(read_preset(name))})
_SETTINGS_KEYS = {n: sorted(_keys(read_params_file(n, SETTINGS)[1]))
                  for n in ("planner", "cascade", "bidders", "auction", "ledger", "liquidity")}


def _assert_finite(data: Any, path: str = "") -> None:
    if isinstance(data, float | Decimal):
        assert math.isfinite(data), path
    elif isinstance(data, dict):
        for k, v in data.items():
            _assert_finite(v, f"{path}.{k}")
    elif isinstance(data, list | tuple):
        for i, v in enumerate(data):
            _assert_finite(v, f"{path}[{i}]")


def _loads_or_names_a_field(load: Any) -> None:
    error: InvalidInput | None = None
    try:
        params = load()
    except InvalidInput as exc:  # any other exception fails the test
        error = exc
    if error is not None:
        assert isinstance(error, ParamsError)
        assert error.field
        return
    _assert_finite(params.model_dump())


@given(name=st.sampled_from([n for n in list_presets() if n != "derive-pm2"]),
       key=st.sampled_from(_PRESET_KEYS) | st.text(min_size=1, max_size=10), value=_values,
       extra=st.dictionaries(st.sampled_from(_PRESET_KEYS), _values, max_size=2))
@example(name="pmargin", key="underlyings.BTC.vol_shock.up", value=math.inf, extra={})
@example(name="okx-pm", key="composition.factor", value="nan", extra={})
@example(name="span", key="underlyings", value=[1], extra={"a..b": 1})
def test_any_preset_override_loads_or_raises_params_error(name, key, value, extra):
    _loads_or_names_a_field(lambda: load_params(name, {key: value, **extra}))


@given(name=st.sampled_from(sorted(_SETTINGS_KEYS)), data=st.data(), value=_values)
def test_any_settings_override_loads_or_raises_params_error(name, data, value):
    from pmargin.liquidation.auction import AuctionParams
    from pmargin.liquidation.execution import BiddersParams
    from pmargin.liquidation.ledger import LedgerParams
    from pmargin.liquidation.liquidity import LiquidityParams

    schema = {"planner": PlannerParams, "cascade": CascadeParams, "bidders": BiddersParams,
              "auction": AuctionParams, "ledger": LedgerParams,
              "liquidity": LiquidityParams}[name]
    key = data.draw(st.sampled_from(_SETTINGS_KEYS[name]) | st.text(min_size=1, max_size=10))
    _loads_or_names_a_field(lambda: load_params_file(schema, name, SETTINGS, {key: value}))


@given(payload=st.binary(max_size=200)
       | st.text(max_size=200).map(lambda t: t.encode("utf-8"))
       | st.sampled_from([b"", b"\x00", b"[x]\ny = nan\n", b"model = 'portfolio'\n",
                          b"model = 'standard'\nname = 1\n", b"a = {b = [1, {c = 2}]}\n"]))
def test_any_file_content_loads_or_raises_params_error(tmp_path_factory, payload):
    f = tmp_path_factory.mktemp("p") / "f.toml"
    f.write_bytes(payload)
    _loads_or_names_a_field(lambda: load_params(f))
    _loads_or_names_a_field(lambda: load_planner_params(f))


@pytest.mark.parametrize(("preset", "key"), [("deribit-pm", "min_vol"), ("okx-pm", "pivot_days"),
                                             ("span", "stable_depeg"),
                                             ("pmargin", "range_edge_conversion")])
def test_a_preset_setting_missing_from_its_file_is_an_error(tmp_path, preset, key):
    text = _shipped_text("models/presets", f"{preset}.toml")
    cut = re.sub(rf"(?m)^{key} = .*$", "", text)
    assert cut != text
    f = tmp_path / f"{preset}.toml"
    f.write_text(cut)
    with pytest.raises(ParamsError) as err:
        load_params(f)
    assert err.value.field.endswith(key)
    assert "required" in err.value.reason


def test_vol_scenarios_only_where_a_bucket_grid_uses_them():
    with pytest.raises(ParamsError, match="not used by an 'explicit' grid"):
        load_params("okx-pm", {"underlyings.BTC.grid.vol_scenarios": ["up"]})
    with pytest.raises(ParamsError, match="needs 'vol_scenarios'"):
        load_params("deribit-pm", {"underlyings.BTC.grid.vol_scenarios": []})
