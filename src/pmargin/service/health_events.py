"""Health transitions of accounts as events of the log.

After every re-margin (a market update re-margins the whole book; a fill or a transfer one or a
few accounts) each account whose health changed since its last ``health`` event gets a new one:
``{"account", "from", "to", "equity", "initial_margin", "maintenance_margin", "epoch",
"cause_seq"}``. An account that never had a ``health`` event is ``healthy``. The tracker is
rebuilt from the log on replay (:meth:`HealthTracker.observe`), so a restart neither repeats nor
misses a transition.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pmargin._typing import FloatArray
from pmargin.liquidation.health import HEALTH_NAMES, classify

__all__ = ["HealthTracker"]


class HealthTracker:
    """Last logged health of every account (absent means ``healthy``)."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}

    def observe(self, payload: dict[str, Any]) -> None:
        """Record a logged ``health`` event (live or replayed)."""
        code = HEALTH_NAMES.index(str(payload["to"]))
        if code == 0:
            self.last.pop(str(payload["account"]), None)
        else:
            self.last[str(payload["account"])] = code

    def label(self, account: str) -> str:
        """Last logged health of ``account``."""
        return HEALTH_NAMES[self.last.get(account, 0)]

    def transitions(self, accounts: Sequence[str], equity: FloatArray,
                    initial_margin: FloatArray, maintenance_margin: FloatArray,
                    *, epoch: int | None, cause_seq: int) -> list[dict[str, Any]]:
        """Payloads of the ``health`` events due for ``accounts`` (nothing recorded yet).

        Parameters
        ----------
        accounts : sequence of str
            Account ids, shape (n,).
        equity, initial_margin, maintenance_margin : ndarray
            Their margins now (book margin currency), shape (n,) each.
        epoch : int or None
            The margin epoch these margins belong to (``margin_results.epoch``).
        cause_seq : int
            Sequence number of the event that caused the re-margin.

        Returns
        -------
        list of dict
            One payload per account whose health differs from its last logged one, in the
            order of ``accounts``. Accounts with non-finite margins are left out (a NaN never
            makes a health decision; the book summary reports them).
        """
        eq = np.asarray(equity, dtype=np.float64)
        im = np.asarray(initial_margin, dtype=np.float64)
        mm = np.asarray(maintenance_margin, dtype=np.float64)
        ok = np.isfinite(eq) & np.isfinite(im) & np.isfinite(mm)
        codes = np.zeros(eq.size, dtype=np.int64)
        if ok.any():
            codes[ok] = classify(eq[ok], im[ok], mm[ok])
        last = np.zeros(eq.size, dtype=np.int64)
        if self.last:
            for i, a in enumerate(accounts):
                c = self.last.get(a)
                if c is not None:
                    last[i] = c
        out = []
        for k in np.flatnonzero(ok & (codes != last)).tolist():
            i = int(k)
            out.append({"account": accounts[i], "from": HEALTH_NAMES[int(last[i])],
                        "to": HEALTH_NAMES[int(codes[i])], "equity": float(eq[i]),
                        "initial_margin": float(im[i]), "maintenance_margin": float(mm[i]),
                        "epoch": epoch, "cause_seq": cause_seq})
        return out
