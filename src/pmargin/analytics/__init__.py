"""Analytics over history and books: history markets, backtests, VaR, replays, audit.

Layer above the core (market, models, engine, liquidation); the core never imports it.
"""
