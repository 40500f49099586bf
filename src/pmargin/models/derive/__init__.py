"""Derive PMRM_2 portfolio margin: parameter schema, the exact computation, and the model.

* :mod:`~pmargin.models.derive.params`: parameter schema and the parameter-file loading function;
* :mod:`~pmargin.models.derive.pm2`: PMRM_2 on Derive's own inputs (one subaccount), reproduced
  exactly on the published cases;
* :mod:`~pmargin.models.derive.adapter`: a pmargin account (book row + market) as Derive inputs;
* :mod:`~pmargin.models.derive.model`: :class:`DerivePM2Model`, the ``derive-pm2`` margin model
  behind the common interface.
"""

from pmargin.models.derive.model import DerivePM2Model
from pmargin.models.derive.params import DerivePM2Params, load_derive_pm2_params
from pmargin.models.derive.pm2 import DerivePM2Inputs, DerivePM2Result, compute_derive_pm2

__all__ = [
    "DerivePM2Inputs",
    "DerivePM2Model",
    "DerivePM2Params",
    "DerivePM2Result",
    "compute_derive_pm2",
    "load_derive_pm2_params",
]
