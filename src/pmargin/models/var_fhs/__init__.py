"""VaR/ES margin by filtered historical simulation (the ``var-fhs`` preset)."""

from pmargin.models.var_fhs.model import VarFhsModel, VarFhsPrepared, expected_shortfall
from pmargin.models.var_fhs.params import MODEL_NAME, VarFhsParams, load_var_fhs_params

__all__ = ["MODEL_NAME", "VarFhsModel", "VarFhsParams", "VarFhsPrepared", "expected_shortfall",
           "load_var_fhs_params"]
