"""Book engine: every account of a venue margined in one pass with a margin model, kept current.

Sits above :mod:`pmargin.models` (it drives a model over a :class:`pmargin.book.Book`);
:mod:`pmargin.engine.executors` runs the per-account evaluation locally or on Dask.
"""

from pmargin.engine.book_engine import BookEngine

__all__ = ["BookEngine"]
