"""Margin results: arrays over a book, and a detailed view of one account.

Signs: margins are positive amounts in the margin currency; ``equity`` is the account value
(collateral plus position values); P&L is positive for a gain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from pmargin._typing import FloatArray, IntArray
from pmargin.models.health import HEALTH_NAMES, classify

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["HEALTH_NAMES", "ISOLATED_COMPONENTS", "AccountMargin", "BookMarginResult", "Columns",
           "isolated_health"]


class Columns:
    """A small table kept as columns until a pandas DataFrame is asked for.

    The explanations of one account's margin (:class:`AccountMargin`) are built as
    :class:`Columns`, so that a caller who only wants numbers or JSON (``pmargin margin
    --json``) never imports pandas (about 0.2 s of a 0.5 s command); reading
    ``AccountMargin.by_position`` (or ``scenarios``, ``risk_matrix``) builds the DataFrame once.

    Parameters
    ----------
    columns : mapping of str to sequence
        Column name to values (NumPy arrays or lists), all of one length, in display order.
    index : str, optional
        Column that becomes the DataFrame's index.
    pivot : (list of str, str, str), optional
        ``(index columns, column, values)``: the DataFrame is that pivot table (first value of
        each cell) instead of the table itself.
    """

    def __init__(self, columns: Mapping[str, Sequence[Any] | np.ndarray], index: str | None = None,
                 pivot: tuple[list[str], str, str] | None = None) -> None:
        self.columns = dict(columns)
        self.index = index
        self.pivot = pivot

    @classmethod
    def from_records(cls, rows: Sequence[Mapping[str, Any]],
                     pivot: tuple[list[str], str, str] | None = None) -> Columns:
        """Table of records that all have the keys of the first, in its order."""
        keys = list(rows[0]) if rows else []
        if any(list(r) != keys for r in rows):
            raise ValueError("records must have the same keys in the same order")
        return cls({k: [r[k] for r in rows] for k in keys}, pivot=pivot)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def column(self, name: str) -> list[Any]:
        """One column as Python values (NumPy scalars converted)."""
        v = self.columns[name]
        return [x.item() if isinstance(x, np.generic) else x
                for x in (v.tolist() if isinstance(v, np.ndarray) else v)]

    def records(self) -> list[dict[str, Any]]:
        """One dict per row, index column first.

        The same as ``DataFrame.reset_index().to_dict("records")`` of the table.
        """
        names = list(self.columns)
        if self.index is not None:
            names.remove(self.index)
            names.insert(0, self.index)
        cols = [self.column(n) for n in names]
        return [dict(zip(names, row, strict=True)) for row in zip(*cols, strict=True)]

    def to_frame(self) -> pd.DataFrame:
        """The DataFrame (imports pandas)."""
        import pandas as pd

        df = pd.DataFrame(self.columns)
        if self.pivot is not None:
            idx, col, val = self.pivot
            return df.pivot_table(index=idx, columns=col, values=val, aggfunc="first")
        return df.set_index(self.index) if self.index is not None else df


class _Table:
    """Dataclass field holding a DataFrame, or :class:`Columns` turned into one when read.

    None when there is no table.
    """

    empty = False  # a missing table reads as None (as an empty DataFrame in _FullTable)

    def __init__(self) -> None:
        self.attr = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = "_table_" + name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> None: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> pd.DataFrame | None: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> pd.DataFrame | None:
        if obj is None:
            return None  # the dataclass default: no table
        v = obj.__dict__.get(self.attr)
        if isinstance(v, Columns):
            v = v.to_frame()
            obj.__dict__[self.attr] = v
        elif v is None and self.empty:
            import pandas as pd

            v = pd.DataFrame()
            obj.__dict__[self.attr] = v
        return v

    def __set__(self, obj: object, value: pd.DataFrame | Columns | None) -> None:
        obj.__dict__[self.attr] = value

    def raw(self, obj: object) -> pd.DataFrame | Columns | None:
        """The stored value, not converted."""
        v: pd.DataFrame | Columns | None = obj.__dict__.get(self.attr)
        return v


class _FullTable(_Table):
    """A :class:`_Table` that is never None: no table reads as an empty DataFrame."""

    empty = True

    @overload  # type: ignore[override]
    def __get__(self, obj: None, owner: type | None = None) -> None: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> pd.DataFrame: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> pd.DataFrame | None:
        return super().__get__(obj, owner)

ISOLATED_COMPONENTS = ("isolated_deficit", "isolated_shortfall_im", "isolated_shortfall_mm")
"""Components of isolated margin, summed over an account's positions: ``max(0, -E_p)``,
``max(0, IM_p - E_p)`` and ``max(0, MM_p - E_p)`` for each position's own equity ``E_p``."""


def isolated_health(components: dict[str, Any]) -> IntArray | None:
    """Health code of the worst isolated position of each account (None without isolation).

    A position is bankrupt, in liquidation or in margin call exactly when it adds to
    ``isolated_deficit``, ``isolated_shortfall_mm`` or ``isolated_shortfall_im``, so the worst
    position's code is the one rule applied to ``(-deficit, shortfall_im, shortfall_mm)``. The
    components are plain arrays over accounts, so the code survives chunking and concatenation.

    Parameters
    ----------
    components : dict of str to ndarray
        A result's components.

    Returns
    -------
    ndarray of int or None
        Codes per account, or None when the result has no isolated components.
    """
    if not all(k in components for k in ISOLATED_COMPONENTS):
        return None
    deficit, short_im, short_mm = (np.asarray(components[k], np.float64)
                                   for k in ISOLATED_COMPONENTS)
    return classify(-deficit, short_im, short_mm)


@dataclass
class BookMarginResult:
    """Margin of every account of a book.

    Attributes
    ----------
    model : str
        Preset name.
    params_digest : str
        sha256 of the parameters used.
    margin_currency : str
        Currency of every amount.
    mc_usd : float
        USD price of the margin currency (multiply to get USD).
    account_ids : list of str
        Row labels: the list of the book margined (shared, not copied; a book's rows are
        not renamed in place).
    initial_margin, maintenance_margin, equity : ndarray
        Per account.
    components : dict of str to ndarray
        Named parts of the requirement (``worst_case``, ``roll_shock``, ``open_orders`` ...).
    greeks : dict of str to ndarray
        Account Greeks: ``delta`` (coin), ``delta_usd``, ``gamma``, ``vega`` (USD per vol point),
        ``theta`` (USD per day).
    """

    model: str
    params_digest: str
    margin_currency: str
    mc_usd: float
    account_ids: list[str]
    initial_margin: FloatArray
    maintenance_margin: FloatArray
    equity: FloatArray
    components: dict[str, FloatArray] = field(default_factory=dict)
    greeks: dict[str, FloatArray] = field(default_factory=dict)

    @property
    def available_margin(self) -> FloatArray:
        """Equity minus initial margin (what can be withdrawn or used for new risk)."""
        return self.equity - self.initial_margin

    @property
    def margin_ratio(self) -> FloatArray:
        """Maintenance margin over equity (>= 1 means liquidation; inf when equity <= 0)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(self.equity > 0, self.maintenance_margin / np.where(
                self.equity > 0, self.equity, 1.0), np.inf)
        return np.where((self.maintenance_margin == 0) & (self.equity >= 0), 0.0, r)

    @property
    def health(self) -> IntArray:
        """Health code per account (:func:`pmargin.models.health.classify`; raises on NaN).

        With isolated margin, an account is as unhealthy as its worst position (see
        :func:`isolated_health`).
        """
        codes = classify(self.equity, self.initial_margin, self.maintenance_margin)
        worst = isolated_health(self.components)
        return codes if worst is None else np.maximum(codes, worst)

    def to_frame(self) -> pd.DataFrame:
        """Return one row per account with margins, equity, ratios, health and components."""
        import pandas as pd

        df = pd.DataFrame({
            "account_id": self.account_ids,
            "initial_margin": self.initial_margin,
            "maintenance_margin": self.maintenance_margin,
            "equity": self.equity,
            "available_margin": self.available_margin,
            "margin_ratio": self.margin_ratio,
            "health": [HEALTH_NAMES[c] for c in self.health],
        })
        for k, v in self.components.items():
            df[k] = v
        return df.set_index("account_id")


@dataclass
class AccountMargin:
    """Margin of one account with everything needed to explain it.

    Attributes
    ----------
    model, margin_currency, mode : str
        Preset, currency of all amounts, and mode (``cross``, ``isolated`` or ``portfolio``).
    initial_margin, maintenance_margin, equity : float
        Requirement and account value.
    mc_usd : float
        USD price of the margin currency.
    components : dict of str to float
        Named parts of the requirement.
    by_position : pandas.DataFrame
        One row per position: quantity, value, its requirement or its P&L at the worst scenario.
        Models pass it as :class:`Columns` (pandas is imported when it is first read).
    scenarios : pandas.DataFrame or None
        Portfolio margin only: one row per scenario (``underlying``, ``name``, ``price_shock``,
        ``vol_shock``, ``weight``, ``pnl``).
    risk_matrix : pandas.DataFrame or None
        Portfolio margin only: P&L by (underlying, price shock) and vol shock.
    worst_scenario : dict or None
        Portfolio margin only: the binding scenario per underlying.
    greeks : dict of str to float
        Account Greeks (see :class:`BookMarginResult`).
    """

    model: str
    margin_currency: str
    mode: str
    initial_margin: float
    maintenance_margin: float
    equity: float
    mc_usd: float
    params_digest: str = ""
    components: dict[str, float] = field(default_factory=dict)
    by_position: _FullTable = _FullTable()
    scenarios: _Table = _Table()
    risk_matrix: _Table = _Table()
    worst_scenario: dict[str, Any] | None = None
    greeks: dict[str, float] = field(default_factory=dict)

    @property
    def available_margin(self) -> float:
        """Equity minus initial margin."""
        return self.equity - self.initial_margin

    @property
    def margin_ratio(self) -> float:
        """Maintenance margin over equity (inf when equity <= 0 and MM > 0)."""
        if self.maintenance_margin == 0 and self.equity >= 0:
            return 0.0
        return self.maintenance_margin / self.equity if self.equity > 0 else float("inf")

    @property
    def health(self) -> str:
        """``healthy``, ``margin_call``, ``liquidation`` or ``bankrupt``."""
        code = int(classify(self.equity, self.initial_margin, self.maintenance_margin))
        comps = {k: np.array([v]) for k, v in self.components.items()}
        worst = isolated_health(comps)
        return HEALTH_NAMES[code if worst is None else max(code, int(worst[0]))]

    def to_frame(self) -> pd.DataFrame:
        """Return the per-position breakdown (a copy)."""
        return self.by_position.copy()

    def positions_priced_by(self, how: str) -> list[str]:
        """Positions valued in one way (``by_position["priced_by"]``), e.g. ``"model"``.

        Parameters
        ----------
        how : str
            ``"market"``, ``"index"``, ``"model"`` or ``"settlement"``.

        Returns
        -------
        list of str
            Instrument names, in the order of ``by_position``.
        """
        raw = _table(self, "by_position")
        if isinstance(raw, Columns):  # without building the DataFrame
            if "priced_by" not in raw.columns or raw.index is None:
                return []
            return [str(n) for n, p in zip(raw.column(raw.index), raw.column("priced_by"),
                                            strict=True) if p == how]
        if raw is None or "priced_by" not in raw.columns:
            return []
        col = raw["priced_by"]
        return [str(n) for n in col.index[col == how]]

    @property
    def model_priced(self) -> list[str]:
        """Positions the market does not list, priced from the curve and surface (opt-in)."""
        return self.positions_priced_by("model")

    @property
    def settled(self) -> list[str]:
        """Expired positions valued at the market's settlement price (opt-in)."""
        return self.positions_priced_by("settlement")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready summary (margins in margin currency and USD)."""
        out: dict[str, Any] = {
            "model": self.model,
            "mode": self.mode,
            "margin_currency": self.margin_currency,
            "initial_margin": self.initial_margin,
            "maintenance_margin": self.maintenance_margin,
            "equity": self.equity,
            "available_margin": self.available_margin,
            "margin_ratio": self.margin_ratio,
            "health": self.health,
            "usd": {
                "rate": self.mc_usd,
                "initial_margin": self.initial_margin * self.mc_usd,
                "maintenance_margin": self.maintenance_margin * self.mc_usd,
                "equity": self.equity * self.mc_usd,
            },
            "components": dict(self.components),
            "greeks": dict(self.greeks),
            "params_digest": self.params_digest,
            "model_priced": self.model_priced,
            "settled": self.settled,
            "positions": _records(_table(self, "by_position"), reset_index=True),
        }
        if self.worst_scenario is not None:
            out["worst_scenario"] = self.worst_scenario
        scenarios = _table(self, "scenarios")
        if scenarios is not None:
            out["scenarios"] = _records(scenarios, reset_index=False)
        return out


def _table(obj: AccountMargin, name: str) -> pd.DataFrame | Columns | None:
    """A table field of ``obj`` as stored (a DataFrame, Columns or None), not converted."""
    t = AccountMargin.__dict__[name]
    assert isinstance(t, _Table)
    return t.raw(obj)


def _records(table: pd.DataFrame | Columns | None, reset_index: bool) -> list[dict[str, Any]]:
    """Rows of a table as dicts (the index first when ``reset_index``)."""
    if table is None:
        return []
    if isinstance(table, Columns):
        return table.records()
    frame = table.reset_index() if reset_index else table
    return [{str(k): v for k, v in r.items()} for r in frame.to_dict(orient="records")]
