"""Venue configuration of the service: one TOML file, validated strictly."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pmargin.errors import ParamsError
from pmargin.paramfiles import Shipped, load_params_file

__all__ = ["BookConfig", "ProximityConfig", "VenueConfig", "load_venue"]

_SHIPPED = Shipped("pmargin.service", "", "venue")


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
    """Market-data policy and fill price bands (see venue.toml)."""

    futures_price_band: float = Field(gt=0)
    option_price_band_rel: float = Field(ge=0)
    option_price_band_abs: float = Field(ge=0)


class EnforcementConfig(_Strict):
    """Automatic liquidation (``[enforcement]`` of the venue TOML; docs/realtime.md)."""

    enabled: bool
    method: Literal["market", "takeover", "auction"]
    loss_method: Literal["adl", "socialised"]
    breaker_share: float = Field(gt=0, le=1)
    breaker_min_accounts: int = Field(ge=1)
    step_delay_seconds: float = Field(ge=0, le=60)
    insurance_fund_seed: Decimal = Field(ge=0)
    liquidator_account: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")


class StreamConfig(_Strict):
    """The WebSocket stream (``[stream]`` of the venue TOML)."""

    queue_size: int = Field(ge=1, le=100_000)
    socket_buffer_bytes: int = Field(ge=4096, le=16 * 1024 * 1024)
    auth_timeout_seconds: float = Field(gt=0, le=60)
    book_interval_seconds: float = Field(default=0.25, ge=0, le=60)


class DemoConfig(_Strict):
    """The generated demo book seeded on first start."""

    accounts: int = Field(ge=1, le=100_000)
    seed: int


class AttestConfig(_Strict):
    """Attestations (docs/attestations.md): the signing key and the proofs kept in memory."""

    key_path: str = Field(default="var/attest-key.pem", min_length=1)
    keep_epochs: int = Field(default=4, ge=1, le=1000)
    workers: int = Field(default=1, ge=1, le=64)


class ProximityConfig(_Strict):
    """The dashboard's liquidation-proximity curve (``[proximity]``; service/proximity.py)."""

    refresh_seconds: float = Field(default=30.0, ge=0, le=86400)


class VenueConfig(_Strict):
    """The whole venue."""

    schema_version: int
    name: str
    source: str
    books: list[BookConfig] = Field(min_length=1)
    money: MoneyConfig
    market: MarketConfig
    demo: DemoConfig
    # optional so that venue files written before attestations still load (defaults above)
    attest: AttestConfig = AttestConfig()
    proximity: ProximityConfig = ProximityConfig()
    enforcement: EnforcementConfig
    stream: StreamConfig

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
    cfg = load_params_file(VenueConfig, path if path is not None else "venue", _SHIPPED)
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
