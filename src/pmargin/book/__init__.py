"""Account data of a whole venue: positions, entry notionals, collateral and orders as matrices.

Data only (below the models): the engine that margins a book is :mod:`pmargin.engine`.
"""

from pmargin.book.positions import Book, OrderTable

__all__ = ["Book", "OrderTable"]
