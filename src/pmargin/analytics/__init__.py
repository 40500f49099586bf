"""Analytics on history: history markets, backtests and coverage tests (issue 12).

The package sits above the core (``market/``, ``models/``, ``engine/``, ``synthetic.py``) and
below ``service/`` and ``cli.py``; nothing in the core imports it. Import the modules directly
(:mod:`pmargin.analytics.history`, :mod:`pmargin.analytics.backtest`,
:mod:`pmargin.analytics.coverage`): this file imports nothing, so importing one of them does not
load the others.
"""
