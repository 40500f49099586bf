"""The margin service: persistent accounts, event log, double-entry ledger and HTTP API.

Layers inside the package (one way): ``config`` and ``money`` (pure) -> ``tables`` and
``database`` (SQLAlchemy, Alembic) -> ``state`` (in-memory venue rebuilt from the log) ->
``store`` (one transaction per accepted write) -> ``app`` (FastAPI) -> ``server`` (process).
"""
