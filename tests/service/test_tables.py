"""The Alembic migrations create exactly the tables that service/tables.py declares.

Migrations are frozen copies of the schema (Alembic practice); this test keeps the two in step.
"""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from pmargin.service.database import connect, migrate
from pmargin.service.tables import metadata


def test_migrations_match_the_declared_tables(tmp_path):
    engine = connect(f"sqlite:///{tmp_path / 'schema.db'}")
    migrate(engine)
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diffs == []
