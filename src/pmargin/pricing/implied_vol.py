"""Vectorised Black-76 implied volatility (array in, array out).

The solver works on the *normalised* problem. With ``x = ln(F/K)``, total volatility
``s = sigma sqrt(tau)`` and the option's time value ``V/D - intrinsic`` divided by ``sqrt(F K)``,
a call and a put with the same strike have the same time value, and that time value is the same
for ``x`` and ``-x``. Every option is therefore reduced to an out-of-the-money call with
``x <= 0``, whose normalised price

.. math:: b(s) = e^{x/2} N(x/s + s/2) - e^{-x/2} N(x/s - s/2)

rises strictly from 0 (``s = 0``) to ``b_max = e^{x/2}`` (``s -> inf``), with an inflection point
at ``s_c = sqrt(2|x|)`` (where ``d1 = 0``). The target is split at ``b(s_c)``:

* below it (``s < s_c``) Newton's method is run on ``ln b(s) - ln beta``; ``b`` is computed as
  ``e^{x/2} phi(d1) [Y(d1) - Y(d2)]`` with the Mills ratio ``Y = N / phi`` taken from the scaled
  complementary error function, so ``ln b`` stays finite and accurate even for prices far below
  the smallest double;
* above it Newton's method is run on ``ln(b_max - beta) - ln(b_max - b(s))``, where
  ``b_max - b = e^{x/2} N(-d1) + e^{-x/2} N(d2)`` is a sum of positive terms.

Both objectives are increasing in ``s`` and nearly linear in the regions where they are used, so
Newton converges in a handful of steps from the asymptotic starting guesses. Every evaluation also
narrows a bracket ``[lo, hi]`` around the root (initially ``[0, s_c]`` or ``[s_c, inf)``); a Newton
step that leaves the bracket or is not finite is replaced by bisection (or by doubling while the
upper end is still infinite). The solver therefore cannot diverge: it either meets the step
tolerance or reports :data:`NO_CONVERGENCE` after ``max_iter`` evaluations.

All work is done with NumPy on the whole array; elements that have converged drop out of the
active set, so the cost follows the slowest element only in the number of (ever smaller) passes.

Failure codes (``ImpliedVolResult.reason``)
-------------------------------------------
==  ==========================  ========================================================
0   :data:`OK`                  converged; ``vol`` is finite and positive
1   :data:`BELOW_INTRINSIC`     ``price / D`` at or below intrinsic value (no time value)
2   :data:`ABOVE_UPPER_BOUND`   ``price`` at or above ``D F`` (call) or ``D K`` (put)
3   :data:`INVALID_INPUT`       non-finite input, ``F``, ``K`` or ``D <= 0``, or ``tau <= 0``
4   :data:`NO_CONVERGENCE`      no convergence within ``max_iter`` iterations
==  ==========================  ========================================================

Failed elements always get ``vol = NaN`` and ``ok = False``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import numpy.typing as npt
from numpy.typing import ArrayLike
from scipy.special import erfcx, ndtr, ndtri

from pmargin._typing import BoolArray, FloatArray
from pmargin.errors import ImpliedVolFailureWarning, InvalidInput

__all__ = [
    "ABOVE_UPPER_BOUND",
    "BELOW_INTRINSIC",
    "INVALID_INPUT",
    "NO_CONVERGENCE",
    "OK",
    "REASONS",
    "ImpliedVolResult",
    "implied_vol",
    "implied_vol_inverse",
]

OK = 0
"""Converged."""
BELOW_INTRINSIC = 1
"""Undiscounted price at or below intrinsic value: no positive time value to explain."""
ABOVE_UPPER_BOUND = 2
"""Price at or above the no-arbitrage upper bound ``D F`` (call) or ``D K`` (put)."""
INVALID_INPUT = 3
"""Non-finite input, non-positive forward, strike or discount, or ``tau <= 0`` (expired)."""
NO_CONVERGENCE = 4
"""The iteration did not meet the tolerance within ``max_iter`` evaluations."""

REASONS: Mapping[int, str] = MappingProxyType(
    {
        OK: "ok",
        BELOW_INTRINSIC: "price at or below intrinsic value",
        ABOVE_UPPER_BOUND: "price at or above upper bound (D*F for calls, D*K for puts)",
        INVALID_INPUT: "non-positive or non-finite input, or expired (tau <= 0)",
        NO_CONVERGENCE: "no convergence within max_iter",
    }
)
"""Human-readable meaning of every reason code."""

DEFAULT_MAX_ITER = 100

_SQRT_HALF_PI = math.sqrt(0.5 * math.pi)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)

Int8Array = npt.NDArray[np.int8]


@dataclass(frozen=True, eq=False)
class ImpliedVolResult:
    """Result of :func:`implied_vol`: one entry per (broadcast) input element.

    Attributes
    ----------
    vol : ndarray of float64
        Implied volatility (decimal, annualised on the ``tau`` year). NaN where ``ok`` is False.
    ok : ndarray of bool
        True where the solver converged.
    reason : ndarray of int8
        0 ok, 1 price at or below intrinsic, 2 price at or above the upper bound, 3 invalid input
        or expired, 4 no convergence (see :data:`REASONS`).
    """

    vol: FloatArray
    ok: BoolArray
    reason: Int8Array

    @property
    def n_failed(self) -> int:
        """Number of elements that were not solved."""
        return int(np.count_nonzero(~self.ok))

    def counts(self) -> dict[int, int]:
        """Count the elements per reason code.

        Returns
        -------
        dict of int to int
            Reason code to number of elements, for every code in :data:`REASONS`.
        """
        flat = self.reason.ravel()
        return {code: int(np.count_nonzero(flat == code)) for code in REASONS}


def implied_vol(
    price: ArrayLike,
    forward: ArrayLike,
    strike: ArrayLike,
    tau: ArrayLike,
    is_call: ArrayLike,
    discount: ArrayLike = 1.0,
    *,
    tol: float = 1e-12,
    max_iter: int = DEFAULT_MAX_ITER,
    warn: bool = False,
) -> ImpliedVolResult:
    """Black-76 implied volatility of option prices, fully vectorised.

    Parameters
    ----------
    price : array_like
        Option price in USD per option on one unit of underlying (discounted, as returned by
        :func:`pmargin.pricing.black76.price`).
    forward, strike : array_like
        Forward and strike in USD.
    tau : array_like
        Time to expiry in years.
    is_call : array_like of bool
        True for calls, False for puts.
    discount : array_like, default 1.0
        Discount factor to expiry.
    tol : float, default 1e-12
        Relative tolerance on total volatility ``sigma sqrt(tau)``: iteration stops when a
        Newton step changes it by at most ``tol`` times its value, or when the bracket around
        the root is that narrow. Values much below 1e-15 may not be attainable.
    max_iter : int, default 100
        Maximum number of objective evaluations per element.
    warn : bool, default False
        Emit one :class:`pmargin.errors.ImpliedVolFailureWarning` summarising the failures,
        if there are any.

    Returns
    -------
    ImpliedVolResult
        ``vol``, ``ok`` and ``reason`` arrays with the broadcast shape of the inputs.

    Raises
    ------
    pmargin.errors.InvalidInput
        If ``tol`` is not positive or ``max_iter`` is below 1.

    Notes
    -----
    See the module docstring for the algorithm and the reason codes. Prices that are consistent
    with Black-76 but carry no representable time value (deep in the money, where ``price / D``
    rounds to intrinsic) are reported as :data:`BELOW_INTRINSIC`.
    """
    return _implied_vol(price, forward, strike, tau, is_call, discount, tol, max_iter, warn)


def implied_vol_inverse(
    coin_price: ArrayLike,
    forward: ArrayLike,
    strike: ArrayLike,
    tau: ArrayLike,
    is_call: ArrayLike,
    discount: ArrayLike = 1.0,
    *,
    tol: float = 1e-12,
    max_iter: int = DEFAULT_MAX_ITER,
    warn: bool = False,
) -> ImpliedVolResult:
    """Implied volatility of inverse (coin-settled) options quoted in coin, e.g. Deribit marks.

    The USD price is ``coin_price * forward`` (Deribit's ``mark_price * underlying``), which is
    then inverted with :func:`implied_vol`.

    Parameters
    ----------
    coin_price : array_like
        Price in coin per option on one coin.
    forward, strike, tau, is_call, discount : array_like
        As in :func:`implied_vol`.
    tol, max_iter, warn
        As in :func:`implied_vol`.

    Returns
    -------
    ImpliedVolResult
        As in :func:`implied_vol`.
    """
    usd = np.asarray(coin_price, dtype=np.float64) * np.asarray(forward, dtype=np.float64)
    return _implied_vol(usd, forward, strike, tau, is_call, discount, tol, max_iter, warn)


def _implied_vol(
    price: ArrayLike,
    forward: ArrayLike,
    strike: ArrayLike,
    tau: ArrayLike,
    is_call: ArrayLike,
    discount: ArrayLike,
    tol: float,
    max_iter: int,
    warn: bool,
) -> ImpliedVolResult:
    if not (isinstance(tol, int | float) and math.isfinite(tol) and tol > 0.0):
        raise InvalidInput("tol", tol, "must be a positive finite number")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int | np.integer) or max_iter < 1:
        raise InvalidInput("max_iter", max_iter, "must be an integer >= 1")

    arrays = np.broadcast_arrays(
        np.asarray(price, dtype=np.float64),
        np.asarray(forward, dtype=np.float64),
        np.asarray(strike, dtype=np.float64),
        np.asarray(tau, dtype=np.float64),
        np.asarray(discount, dtype=np.float64),
        np.asarray(is_call, dtype=bool),
    )
    shape = arrays[0].shape
    p, f, k, t, d = (np.ravel(a) for a in arrays[:5])
    c = np.ravel(arrays[5])

    n = p.size
    vol = np.full(n, np.nan)
    reason = np.full(n, INVALID_INPUT, dtype=np.int8)

    with np.errstate(all="ignore"):
        valid = (
            np.isfinite(p) & np.isfinite(f) & np.isfinite(k) & np.isfinite(t) & np.isfinite(d)
            & (f > 0.0) & (k > 0.0) & (t > 0.0) & (d > 0.0)
        )
        undisc = p / d
        intrinsic = np.where(c, np.maximum(f - k, 0.0), np.maximum(k - f, 0.0))
        upper = np.where(c, f, k)
        time_value = undisc - intrinsic
        gap = upper - undisc  # distance to the upper bound, no cancellation with intrinsic
        below = valid & ~(time_value > 0.0)
        above = valid & ~below & ~(gap > 0.0)
        reason[below] = BELOW_INTRINSIC
        reason[above] = ABOVE_UPPER_BOUND
        todo = np.flatnonzero(valid & ~below & ~above)

        if todo.size:
            ft, kt = f[todo], k[todo]
            log_f, log_k = np.log(ft), np.log(kt)
            x = -np.abs(log_f - log_k)
            half_log_fk = 0.5 * (log_f + log_k)
            log_beta = np.log(time_value[todo]) - half_log_fk
            log_gap = np.log(gap[todo]) - half_log_fk
            s, converged = _solve(x, log_beta, log_gap, tol, int(max_iter))
            sub_vol = np.where(converged, s / np.sqrt(t[todo]), np.nan)
            good = converged & np.isfinite(sub_vol) & (sub_vol > 0.0)
            vol[todo] = np.where(good, sub_vol, np.nan)
            reason[todo] = np.where(good, OK, NO_CONVERGENCE).astype(np.int8)

    ok = reason == OK
    result = ImpliedVolResult(
        vol=vol.reshape(shape), ok=ok.reshape(shape), reason=reason.reshape(shape)
    )
    if warn and result.n_failed:
        counts = {REASONS[code]: m for code, m in result.counts().items() if code != OK and m}
        warnings.warn(
            f"{result.n_failed} of {n} implied volatilities could not be solved: {counts}",
            ImpliedVolFailureWarning,
            stacklevel=3,
        )
    return result


def _lower_objective(
    x: FloatArray, s: FloatArray, log_beta: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """``ln b(s) - ln beta`` and its derivative, for ``0 < s <= sqrt(2|x|)`` (so ``d1 <= 0``)."""
    d1 = x / s + 0.5 * s
    d2 = d1 - s
    # Y(d) = N(d) / phi(d) = sqrt(pi/2) erfcx(-d / sqrt 2), accurate for d <= 0.
    dy = _SQRT_HALF_PI * (erfcx(-d1 * _INV_SQRT2) - erfcx(-d2 * _INV_SQRT2))
    log_b = 0.5 * x - 0.5 * d1 * d1 - _LOG_SQRT_2PI + np.log(np.maximum(dy, 0.0))
    return log_b - log_beta, 1.0 / dy


def _upper_objective(
    x: FloatArray, s: FloatArray, log_gap: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """``ln(b_max - beta) - ln(b_max - b(s))`` and its derivative, for ``s >= sqrt(2|x|)``."""
    d1 = x / s + 0.5 * s
    d2 = d1 - s
    e = np.exp(0.5 * x)
    q = e * ndtr(-d1) + ndtr(d2) / e
    vega = e * _INV_SQRT_2PI * np.exp(-0.5 * d1 * d1)
    return log_gap - np.log(q), vega / q


def _solve(
    x: FloatArray, log_beta: FloatArray, log_gap: FloatArray, tol: float, max_iter: int
) -> tuple[FloatArray, BoolArray]:
    """Safeguarded Newton on the normalised problem; returns total vol and a converged mask."""
    s_c = np.sqrt(-2.0 * x)
    # Normalised price at the inflection point s_c, where d1 = 0 and d2 = -s_c.
    e = np.exp(0.5 * x)
    log_b_c = np.log(0.5 * e - ndtr(-s_c) / e)  # -inf when x == 0
    lower = log_beta <= log_b_c

    # Starting points from the asymptotics of each branch.
    #   lower: ln b ~ -x^2 / (2 s^2)                     -> s = |x| / sqrt(-2 ln beta)
    #   upper: b_max - b ~ 2 b_max N(-s/2) (exact at x=0) -> s = -2 N^-1(gap / (2 b_max))
    with np.errstate(all="ignore"):
        s_low = np.clip(-x / np.sqrt(-2.0 * log_beta), 0.0, s_c)
        s_low = np.where(s_low > 0.0, s_low, 0.5 * s_c)
        ratio = np.clip(np.exp(log_gap - 0.5 * x) * 0.5, 1e-300, 0.5)
        s_up = np.maximum(-2.0 * ndtri(ratio), s_c)
        s_up = np.where(np.isfinite(s_up) & (s_up > 0.0), s_up, s_c + 1.0)
    s = np.where(lower, s_low, s_up)
    lo = np.where(lower, 0.0, s_c)
    hi = np.where(lower, s_c, np.inf)
    converged = np.zeros(x.shape, dtype=bool)

    act = np.arange(x.size)
    for _ in range(max_iter):
        if act.size == 0:
            break
        sa, la, ha, xa, low = s[act], lo[act], hi[act], x[act], lower[act]
        val = np.empty_like(sa)
        der = np.empty_like(sa)
        if low.any():
            val[low], der[low] = _lower_objective(xa[low], sa[low], log_beta[act][low])
        up = ~low
        if up.any():
            val[up], der[up] = _upper_objective(xa[up], sa[up], log_gap[act][up])

        # Both objectives increase with s: tighten the bracket.
        la = np.where(val < 0.0, sa, la)
        ha = np.where(val > 0.0, sa, ha)
        exact = val == 0.0

        newton = sa - val / der
        # A Newton step below the tolerance ends the iteration even when rounding puts it on
        # (not strictly inside) the bracket edge that ``sa`` itself has just become. The residual
        # (a log-price error) must be small too, so a freak derivative cannot stop it early.
        tiny_step = (
            np.isfinite(newton) & (np.abs(newton - sa) <= tol * sa) & (np.abs(val) <= 1e-3)
        )
        use_newton = np.isfinite(newton) & (newton > la) & (newton < ha)
        fallback = np.where(np.isfinite(ha), 0.5 * (la + ha), np.maximum(2.0 * sa, sa + 1.0))
        s_new = np.where(use_newton, newton, fallback)
        s_new = np.where(exact | (tiny_step & ~use_newton), sa, s_new)

        done = exact | tiny_step | (np.isfinite(ha) & (ha - la <= tol * ha))
        s[act], lo[act], hi[act] = s_new, la, ha
        converged[act[done]] = True
        act = act[~done]
    return s, converged
