"""Venue configuration of the service: one TOML file, validated strictly."""

from __future__ import annotations

import tomllib
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pmargin.errors import ParamsError
from pmargin.validation import nearest

__all__ = ["BookConfig", "VenueConfig", "load_venue"]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BookConfig(_Strict):
    """One book: accounts of one margin currency under one margin model."""

    id: str = Field(pattern=r"^[A-Z0-9_]{1,32}$")
    margin_currency: str = Field(pattern=r"^[A-Z]{2,10}$")
    model: str
    collateral_currencies: list[str]


class MoneyConfig(_Strict):
    """Integer minor units of the ledger and of position quantities."""

    quanta: dict[str, Decimal]
    quantity_quantum: Decimal

    @field_validator("quanta")
    @classmethod
    def _positive_quanta(cls, v: dict[str, Decimal]) -> dict[str, Decimal]:
        for ccy, q in v.items():
            if not q.is_finite() or q <= 0:
                raise ValueError(f"quantum of {ccy} must be positive")
        return v


class MarketConfig(_Strict):
    """Market-data policy."""

    max_age_seconds: float = Field(gt=0)


class DemoConfig(_Strict):
    """The generated demo book seeded on first start."""

    accounts: int = Field(ge=1, le=100_000)
    seed: int


class VenueConfig(_Strict):
    """The whole venue."""

    schema_version: int
    name: str
    source: str
    books: list[BookConfig] = Field(min_length=1)
    money: MoneyConfig
    market: MarketConfig
    demo: DemoConfig

    def book(self, book_id: str) -> BookConfig:
        """Return the book named ``book_id``."""
        for b in self.books:
            if b.id == book_id:
                return b
        raise KeyError(book_id)

    def quantum(self, currency: str) -> Decimal:
        """Minor unit of ``currency``."""
        try:
            return self.money.quanta[currency]
        except KeyError:
            raise ParamsError("money.quanta", currency, "currency has no quantum") from None


def _error(exc: ValidationError, source: str) -> ParamsError:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        key = str(err["loc"][-1])
        allowed = _allowed_keys(err["loc"][:-1])
        hint = nearest(key, allowed)
        reason = f"unknown field in {source}" + (f"; did you mean '{hint}'?" if hint else "")
        return ParamsError(loc, key, reason)
    return ParamsError(loc, err.get("input"), f"{err['msg']} ({source})")


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = VenueConfig
    for part in loc:
        if isinstance(part, int):
            continue
        ann: Any = model.model_fields[str(part)].annotation
        args: tuple[Any, ...] = getattr(ann, "__args__", ())
        inner: Any = args[0] if args else ann
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            model = inner
    return list(model.model_fields)


def load_venue(path: str | Path | None = None) -> VenueConfig:
    """Read the venue TOML (the shipped default when ``path`` is None).

    Parameters
    ----------
    path : str or Path, optional
        A venue file.

    Returns
    -------
    VenueConfig
        Validated configuration.

    Raises
    ------
    ParamsError
        Unreadable file, bad TOML, unknown or missing keys, invalid values, unknown models.
    """
    source = str(path) if path is not None else "pmargin/service/venue.toml"
    try:
        if path is None:
            text = (resources.files("pmargin.service") / "venue.toml").read_text("utf-8")
        else:
            text = Path(path).read_text("utf-8")
        raw = tomllib.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise ParamsError("venue", source, f"cannot be read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ParamsError("venue", source, f"is not valid TOML: {exc}") from exc
    try:
        cfg = VenueConfig.model_validate(raw)
    except ValidationError as exc:
        raise _error(exc, source) from exc
    except InvalidOperation as exc:  # pragma: no cover - pydantic wraps these
        raise ParamsError("venue", source, str(exc)) from exc
    from pmargin.models import list_models

    ids = [b.id for b in cfg.books]
    if len(set(ids)) != len(ids):
        raise ParamsError("books", ids, "book ids must be unique")
    for i, b in enumerate(cfg.books):
        if b.model not in list_models():
            raise ParamsError(f"books[{i}].model", b.model, f"unknown model ({source})")
        for c in [b.margin_currency, *b.collateral_currencies]:
            cfg.quantum(c)
    return cfg
