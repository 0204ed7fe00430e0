"""Alembic environment: migrates the connection handed over by `ul_engine.store.db.upgrade`.

For development (`alembic -x db=PATH revision --autogenerate -m ...` with `script_location` pointing here)
it can also open a database itself.
"""

from __future__ import annotations

from pathlib import Path

from alembic import context

from ul_engine.store.models import Base

config = context.config


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        transactional_ddl=True,  # our engine emits BEGIN itself, so SQLite's DDL really is transactional
        render_as_batch=True,  # SQLite can only rebuild tables for most ALTERs
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    from ul_engine.store.db import make_engine

    db = context.get_x_argument(as_dictionary=True).get("db") or config.get_main_option("sqlalchemy.url", "")
    engine = make_engine(Path(db.removeprefix("sqlite:///")), pooled=False)
    with engine.connect() as conn:
        _run(conn)
        conn.commit()
    engine.dispose()
