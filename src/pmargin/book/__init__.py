"""Whole-book engine: all accounts of a venue as sparse matrices, margined in one pass."""

from pmargin.book.positions import Book, OrderTable

__all__ = ["Book", "OrderTable"]
