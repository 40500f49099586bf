"""pmargin: margin management for crypto options portfolios."""

__version__ = "0.1.0"
