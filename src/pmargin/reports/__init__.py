"""Rendering of results: rich tables for the terminal, matplotlib figures."""
