"""Margin models behind one interface; venue methodologies are parameter presets."""

from pmargin.models.base import MarginModel
from pmargin.models.params import list_presets, load_params
from pmargin.models.portfolio_margin import PortfolioMarginModel
from pmargin.models.registry import list_models, load_model
from pmargin.models.result import AccountMargin, BookMarginResult
from pmargin.models.standard import StandardMarginModel

__all__ = [
    "AccountMargin",
    "BookMarginResult",
    "MarginModel",
    "PortfolioMarginModel",
    "StandardMarginModel",
    "list_models",
    "list_presets",
    "load_model",
    "load_params",
]
