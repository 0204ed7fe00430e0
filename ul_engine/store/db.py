"""Engine, connection pragmas, transactions and schema upgrades for the store's SQLite file.

Why this shape:
- WAL lets the GUI read while a worker writes; `busy_timeout` makes a second writer wait instead of
  failing; `synchronous=NORMAL` is durable enough in WAL and far cheaper per commit.
- pysqlite's own transaction handling is switched off (isolation_level=None) and we emit BEGIN
  ourselves, so DDL is transactional and writers can ask for `BEGIN IMMEDIATE`: a deferred transaction
  that reads and then writes can fail with "database is locked" without ever waiting for the lock.
- Upgrades go through Alembic; before an existing database is upgraded it is copied (with SQLite's
  online backup API, which includes the WAL) to `ul.sqlite.bak-YYYYmmdd-HHMMSS` beside it.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import NullPool

from ul_engine.errors import ULError

BUSY_TIMEOUT_S = 10.0
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
BEGIN_OPTION = "ul_begin"
"""Execution option naming the BEGIN statement; the store's write engine sets it to BEGIN IMMEDIATE."""


def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see `_on_begin`)
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def _on_begin(connection: Any) -> None:
    connection.exec_driver_sql(connection.get_execution_options().get(BEGIN_OPTION, "BEGIN"))


def make_engine(db_path: Path, *, pooled: bool = True) -> Engine:
    """An engine whose connections carry the store's pragmas; `engine.execution_options(ul_begin=...)`
    picks the BEGIN flavour per use."""
    engine = create_engine(
        f"sqlite:///{db_path}",
        connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False},
        poolclass=None if pooled else NullPool,
    )
    event.listen(engine, "connect", _on_connect)
    event.listen(engine, "begin", _on_begin)
    return engine


def enable_wal(db_path: Path) -> None:
    """Switch the file to WAL (persistent in the file, so once per open is enough)."""
    con = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            con.execute("PRAGMA journal_mode = WAL")
    finally:
        con.close()


def alembic_config(connection: Any | None = None) -> Any:
    """Alembic config pointing at the migrations inside the package; no alembic.ini needed at runtime."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(db_path: Path) -> str | None:
    """Revision stamped in the file, or None for a new/empty database."""
    if not db_path.exists() or db_path.stat().st_size == 0:
        return None
    con = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_S)
    try:
        has = con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='alembic_version'").fetchone()
        if not has:
            return None
        row = con.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None
    finally:
        con.close()


def backup(db_path: Path) -> Path:
    """Copy the database (including its WAL) to `<name>.bak-YYYYmmdd-HHMMSS` beside it."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = db_path.with_name(f"{db_path.name}.bak-{stamp}")
    n = 1
    while target.exists():
        target = db_path.with_name(f"{db_path.name}.bak-{stamp}-{n}")
        n += 1
    src = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_S)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    return target


def upgrade(db_path: Path, revision: str = "head") -> Path | None:
    """Bring the database to `revision`; returns the backup written first (None for a new database or
    one already at head). Safe when two processes open an old database at once: the migration runs
    under BEGIN IMMEDIATE and Alembic re-reads the version inside that transaction."""
    from alembic import command
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    current = current_revision(db_path)
    head = script.get_current_head()
    if current is not None and current != head and current not in {r.revision for r in script.walk_revisions()}:
        raise ULError(
            f"{db_path} was written by a newer UL Studio (schema revision {current}); "
            "update UL Studio or open another data folder (set UL_HOME)"
        )
    if current == head or (revision != "head" and current == revision):
        return None
    backup_path = backup(db_path) if current is not None else None
    enable_wal(db_path)
    engine = make_engine(db_path, pooled=False)
    try:
        with engine.connect() as connection:
            # Table rebuilds (batch migrations) must neither cascade nor trip over foreign keys, so they are
            # off for this connection (a pragma that only works outside a transaction) and checked at the end.
            connection.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")
            connection = connection.execution_options(**{BEGIN_OPTION: "BEGIN IMMEDIATE"})
            with connection.begin():  # one transaction: a failed migration leaves the old schema intact
                command.upgrade(alembic_config(connection), revision)
                bad = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if bad:
                    raise ULError(f"upgrading {db_path} would break references {bad[:5]}; nothing was changed")
    finally:
        engine.dispose()
    return backup_path
