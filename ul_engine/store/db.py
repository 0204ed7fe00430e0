"""Engine, connection pragmas, transactions and schema upgrades for the store's SQLite file.

Why this shape:
- WAL lets the GUI read while a worker writes; `busy_timeout` makes a second writer wait instead of
  failing; `synchronous=NORMAL` is durable enough in WAL and far cheaper per commit.
- pysqlite's own transaction handling is switched off (isolation_level=None) and we emit BEGIN
  ourselves, so DDL is transactional and writers can ask for `BEGIN IMMEDIATE`: a deferred transaction
  that reads and then writes can fail with "database is locked" without ever waiting for the lock.
- Upgrades go through Alembic; before an existing database is upgraded it is copied (with SQLite's
  online backup API, which includes the WAL) to `ul.sqlite.bak-YYYYmmdd-HHMMSS` beside it.
- A data folder the process cannot write (a read-only mount, a folder without write permission) is opened
  read-only (`mode=ro`; `immutable=1` when WAL's shared-memory file cannot be created there), so reading
  commands work; writing raises `ReadOnlyDataFolder`. SQLite's "database or disk is full" becomes the same
  one-line `DiskFullError` as a checkpoint write on a full disk (the transaction is rolled back).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from ul_engine.core.errors import DiskFullError, ReadOnlyDataFolder, ULError

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


def sqlite_connection(connection: Connection) -> sqlite3.Connection:
    """The pysqlite connection under a SQLAlchemy one (for pragmas and bulk cursors); always there while open."""
    raw = connection.connection.driver_connection
    assert raw is not None, "a connection that is open has a driver connection"
    return raw


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
    from alembic.config import Config  # lazy: alembic costs ~0.3 s; only opening a store needs it

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory  # lazy: alembic costs ~0.3 s; only opening a store needs it

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
    from alembic import command  # lazy: alembic costs ~0.3 s; only opening a store needs it
    from alembic.script import ScriptDirectory  # lazy: alembic costs ~0.3 s; only opening a store needs it

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
            sqlite_connection(connection).execute("PRAGMA foreign_keys = OFF")
            connection = connection.execution_options(**{BEGIN_OPTION: "BEGIN IMMEDIATE"})
            with connection.begin():  # one transaction: a failed migration leaves the old schema intact
                command.upgrade(alembic_config(connection), revision)
                bad = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if bad:
                    raise ULError(f"upgrading {db_path} would break references {bad[:5]}; nothing was changed")
    finally:
        engine.dispose()
    return backup_path


# ---- read-only data folders and full disks ---------------------------------------------------------------


def folder_is_read_only(home: Path) -> bool:
    """Whether this process cannot write the data folder (or its existing database): a read-only mount,
    or permissions (os.access reports EROFS even to root)."""
    db_path = home / "ul.sqlite"
    if home.is_dir() and not os.access(home, os.W_OK | os.X_OK):
        return True
    return db_path.is_file() and not os.access(db_path, os.W_OK)


def _read_only_uri(db_path: Path, immutable: bool) -> str:
    return f"file:{quote(str(db_path.absolute()))}?mode=ro" + ("&immutable=1" if immutable else "")


def _connect_read_only(db_path: Path) -> tuple[str, sqlite3.Connection]:
    """A read-only connection that can read the file: `mode=ro` needs WAL's -shm file (or the right to create
    it); where neither holds, `immutable=1` reads the main file as it is (nothing can write it anyway)."""
    last: Exception | None = None
    for immutable in (False, True):
        uri = _read_only_uri(db_path, immutable)
        con = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return uri, con
        except sqlite3.Error as exc:
            con.close()
            last = exc
    raise ULError(f"{db_path}: cannot open the database read-only ({last})")


def make_read_only_engine(home: Path) -> Engine:
    """An engine for a data folder this process cannot write; ReadOnlyDataFolder when it cannot serve reads."""
    db_path = home / "ul.sqlite"
    if not db_path.is_file():
        raise ReadOnlyDataFolder(f"the data folder {home} is read-only and holds no database yet")
    uri, con = _connect_read_only(db_path)
    try:
        has = con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='alembic_version'").fetchone()
        row = con.execute("SELECT version_num FROM alembic_version").fetchone() if has else None
    finally:
        con.close()
    if (row[0] if row else None) != head_revision():
        raise ReadOnlyDataFolder(
            f"the data folder {home} is read-only and its database needs an upgrade; open it once where it can be "
            "written"
        )
    engine = create_engine(
        "sqlite://",
        creator=lambda: sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, check_same_thread=False),
    )
    event.listen(engine, "connect", _on_connect)
    event.listen(engine, "begin", _on_begin)
    return engine


def read_only_error(home: Path) -> ReadOnlyDataFolder:
    return ReadOnlyDataFolder(f"the data folder {home} is read-only; this command needs to write to it")


def _no_space(home: Path) -> bool:
    """Whether the data folder's file system is (practically) full: SQLite reports a failure to create or grow
    its shared-memory file as a plain "disk I/O error"."""
    try:
        st = os.statvfs(home)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024


@contextlib.contextmanager
def one_line_errors(home: Path) -> Iterator[None]:
    """SQLite's full-disk and read-only failures as the one-line errors a user can act on; others unchanged."""
    try:
        yield
    except (sqlite3.Error, DBAPIError) as exc:
        text = str(getattr(exc, "orig", None) or exc).lower()
        if "database or disk is full" in text or ("disk i/o error" in text and _no_space(home)):
            raise DiskFullError(f"disk full while writing {home / 'ul.sqlite'}; earlier files are kept") from None
        if "readonly database" in text:
            raise read_only_error(home) from None
        if "disk i/o error" in text:
            raise ULError(f"{home / 'ul.sqlite'}: disk I/O error; the last committed data is kept") from None
        raise
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DiskFullError(f"disk full while writing in {home}; earlier files are kept") from None
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise read_only_error(home) from None
        raise
