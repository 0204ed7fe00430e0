"""The `Store`: the one door to UL Studio's database and data folder, shared by workers and the GUI.

Each call opens its own short transaction (session-per-call) and returns frozen records, so any process
may hold a Store: the GUI polls while workers write, each worker being the only writer of its run.
Writes start with BEGIN IMMEDIATE and wait up to the busy timeout for another writer to finish. A run's
status changes only through `transition`, a compare-and-set on the table of allowed transitions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
import platformdirs
from sqlalchemy import CursorResult, Engine, Result, case, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ul_engine.core.errors import CheckpointError, ConfigError, RunNotFound, RunStateError, ULError
from ul_engine.core.user_paths import check_output_folder
from ul_engine.store import db, liveness
from ul_engine.store import metrics as metric_ops
from ul_engine.store.models import Artifact, Checkpoint, Evaluation, Job, Reconstruction, Run
from ul_engine.store.paths import from_stored, to_stored
from ul_engine.store.types import (
    ACTIVE_RUN_STATUSES,
    ARTIFACT_KINDS,
    CONTROL_REQUESTS,
    FINISHED_RUN_STATUSES,
    JOB_STATUSES,
    RUN_STATUSES,
    RUN_TRANSITIONS,
    ArtifactInfo,
    CheckpointInfo,
    JobInfo,
    MetricSeries,
    RunInfo,
)

DB_NAME = "ul.sqlite"
TAIL_CHARS = 16_384
"""Longest stderr tail / error text kept on a run or job (the end is what explains a crash)."""

_REQUEST_PRIORITY = {"stop": 3, "pause": 2, "resume": 2, "save_now": 1, "sample_now": 1}
_RUN_FIELDS = frozenset(
    {
        "name", "step", "total_steps", "started_at", "finished_at", "heartbeat_at", "device", "pid",
        "pid_started_at", "host", "exit_code", "stderr_tail", "error", "preset",
    }
)  # fmt: skip
"""What `update_run` sets; the status changes only through `transition`."""
_TRANSITION_FIELDS = _RUN_FIELDS - {"name", "preset"}
_JOB_FIELDS = frozenset(
    {"status", "position", "device", "attempts", "started_at", "finished_at", "exit_code", "stderr_tail", "error"}
)
_DELETE_CHUNK = 50_000


def default_home() -> Path:
    """$UL_HOME, else the platform's per-user data folder for "ul-studio"."""
    env = os.environ.get("UL_HOME")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("ul-studio", appauthor=False))


def config_hash(config: Mapping[str, Any]) -> str:
    """Hash of a config's sorted JSON; equals `RunConfig.config_hash()` for a resolved config."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def _now() -> datetime:
    return datetime.now(UTC)


def _tail(text: str | None) -> str | None:
    return None if text is None else text[-TAIL_CHARS:]


def _changed(result: Result[Any]) -> int:
    """Rows an UPDATE changed: a Session types its result as Result, and for an UPDATE it is a CursorResult."""
    return cast(CursorResult[Any], result).rowcount


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200:
        raise ConfigError("run name must be 1 to 200 characters")
    if name.isdigit():
        raise ConfigError(f"run name '{name}' would read as a run id; add a letter")
    if any(ord(c) < 32 for c in name):
        raise ConfigError("run name must not contain control characters")
    return name


class Store:
    """Runs, metrics, checkpoints, artifacts, the reconstruction cache and the job queue of one home folder.

    `home` holds `ul.sqlite` and `runs/<id>/`; every path in the database is relative to it.
    """

    def __init__(self, home: Path, engine: Engine, backup_path: Path | None = None) -> None:
        self.home = home
        self.db_path = home / DB_NAME
        self.backup_path = backup_path
        """Copy of the database taken before this open upgraded it (None if no upgrade was needed)."""
        self._engine = engine
        self._writer = engine.execution_options(**{db.BEGIN_OPTION: "BEGIN IMMEDIATE"})
        self._key_ids: dict[str, int] = {}
        self.read_only = False
        """True when the data folder cannot be written: reads work, writes raise ReadOnlyDataFolder."""

    # ---- lifecycle -----------------------------------------------------------------------------------

    @classmethod
    def open(cls, home: Path | str | None = None) -> Store:
        """Open (creating or upgrading) the store in `home` (default: `default_home()`).

        Creates home/ and home/runs/; an older database is first copied to `ul.sqlite.bak-<time>`.
        """
        home = Path(home).expanduser() if home is not None else default_home()
        home = check_output_folder(home.absolute(), writable=False)  # a file or a FIFO named as home: one line
        if db.folder_is_read_only(home):  # read commands work; writes raise ReadOnlyDataFolder
            store = cls(home, db.make_read_only_engine(home))
            store.read_only = True
            return store
        db_path = home / DB_NAME
        with db.one_line_errors(home):
            (home / "runs").mkdir(parents=True, exist_ok=True)
            backup_path = db.upgrade(db_path)
            db.enable_wal(db_path)
        return cls(home, db.make_engine(db_path), backup_path)

    def close(self) -> None:
        """Close pooled connections (the Store stays usable; connections reopen on demand)."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _session(self, write: bool = False) -> Iterator[Session]:
        if write and self.read_only:
            raise db.read_only_error(self.home)
        with (
            db.one_line_errors(self.home),
            Session(self._writer if write else self._engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    @contextlib.contextmanager
    def _cursor(self, write: bool = False) -> Iterator[sqlite3.Cursor]:
        if write and self.read_only:
            raise db.read_only_error(self.home)
        with db.one_line_errors(self.home), (self._writer if write else self._engine).connect() as conn, conn.begin():
            cur = db.sqlite_connection(conn).cursor()
            try:
                yield cur
            finally:
                cur.close()

    # ---- paths -----------------------------------------------------------------------------------------

    def run_dir(self, run_id: int) -> Path:
        """home/runs/<id>/ (created): where a run's checkpoints, previews and exports go."""
        path = self.home / "runs" / str(int(run_id))
        path.mkdir(parents=True, exist_ok=True)
        return path

    def relative(self, path: Path | str) -> str:
        """How `path` is stored: relative to home when inside it."""
        return to_stored(self.home, path)

    def absolute(self, stored: str) -> Path:
        """The absolute path of a stored path."""
        return from_stored(self.home, stored)

    # ---- runs ------------------------------------------------------------------------------------------

    def _run_info(self, r: Run) -> RunInfo:
        return RunInfo(
            id=r.id, name=r.name, stage=r.stage, preset=r.preset, status=r.status, config=r.config,
            config_hash=r.config_hash, parent_run_id=r.parent_run_id, parent_checkpoint_id=r.parent_checkpoint_id,
            parent_checkpoint_sha256=r.parent_checkpoint_sha256, created_at=r.created_at, started_at=r.started_at,
            finished_at=r.finished_at, heartbeat_at=r.heartbeat_at, step=r.step, total_steps=r.total_steps,
            device=r.device, error=r.error, exit_code=r.exit_code, stderr_tail=r.stderr_tail,
            control_request=r.control_request, control_requested_at=r.control_requested_at, pid=r.pid,
            session=r.session, control_session=r.control_session, pid_started_at=r.pid_started_at, host=r.host,
        )  # fmt: skip

    @staticmethod
    def _next_name(session: Session, preset: str) -> str:
        base = re.sub(r"[^\w.-]+", "-", preset).strip("-") or "run"
        pattern = re.compile(rf"^{re.escape(base)}-(\d+)$")
        like = base.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "-%"
        taken = session.scalars(select(Run.name).where(Run.name.like(like, escape="\\"))).all()
        numbers = [int(m.group(1)) for n in taken if (m := pattern.match(n))]
        return f"{base}-{max(numbers, default=0) + 1:03d}"

    def create_run(
        self,
        *,
        name: str | None,
        stage: int,
        preset: str,
        config: Mapping[str, Any],
        total_steps: int | None = None,
        parent_run_id: int | None = None,
        parent_checkpoint_id: int | None = None,
        parent_checkpoint_sha256: str | None = None,
    ) -> RunInfo:
        """Record a new run (status "created") and make its folder.

        Without a name the run is called "<preset>-NNN" (e.g. shapes-32-003). A stage-2 run names the
        stage-1 checkpoint it builds on; its run and sha256 are filled in from the checkpoint when omitted
        and must agree with it when given, so the lineage stays checkable after files move.
        """
        if stage not in (1, 2):
            raise ConfigError(f"stage must be 1 or 2, not {stage}")
        if name is not None:
            name = _check_name(name)
        config = dict(config)
        with self._session(write=True) as s:
            if parent_checkpoint_id is not None:
                ck = s.get(Checkpoint, parent_checkpoint_id)
                if ck is None:
                    raise CheckpointError(f"no checkpoint with id {parent_checkpoint_id}")
                if parent_run_id is None:
                    parent_run_id = ck.run_id
                elif parent_run_id != ck.run_id:
                    raise ConfigError(f"checkpoint {ck.id} belongs to run {ck.run_id}, not to run {parent_run_id}")
                if parent_checkpoint_sha256 is None:
                    parent_checkpoint_sha256 = ck.sha256
                elif parent_checkpoint_sha256 != ck.sha256:
                    raise CheckpointError(f"checkpoint {ck.id} has sha256 {ck.sha256}, not {parent_checkpoint_sha256}")
            if parent_run_id is not None and s.get(Run, parent_run_id) is None:
                raise RunNotFound(f"no run with id {parent_run_id} (given as the parent run)")
            if name is None:
                name = self._next_name(s, preset)
            elif s.scalar(select(Run.id).where(Run.name == name)) is not None:
                raise ConfigError(f"a run named '{name}' already exists; choose another name or leave it empty")
            run = Run(
                name=name, stage=stage, preset=preset, status="created", config=config,
                config_hash=config_hash(config), parent_run_id=parent_run_id,
                parent_checkpoint_id=parent_checkpoint_id, parent_checkpoint_sha256=parent_checkpoint_sha256,
                created_at=_now(), step=0, total_steps=total_steps,
            )  # fmt: skip
            s.add(run)
            s.flush()
            info = self._run_info(run)
        self.run_dir(info.id)
        return info

    @staticmethod
    def _resolve(session: Session, ref: int | str) -> Run:
        if isinstance(ref, bool) or not isinstance(ref, int | str):
            raise TypeError(f"run reference must be an id or a name, not {type(ref).__name__}")
        if isinstance(ref, int):
            run = session.get(Run, ref)
            if run is None:
                raise RunNotFound(f"no run with id {ref}")
            return run
        text = ref.strip()
        if text.isdigit() and (run := session.get(Run, int(text))) is not None:
            return run
        run = session.scalar(select(Run).where(Run.name == text))
        if run is not None:
            return run
        like = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        matches = session.scalars(select(Run).where(Run.name.like(like, escape="\\")).order_by(Run.id).limit(6)).all()
        if len(matches) == 1 and text:
            return matches[0]
        if len(matches) > 1 and text:
            names = ", ".join(m.name for m in matches[:5]) + (", …" if len(matches) > 5 else "")
            raise RunNotFound(f"'{text}' matches several runs ({names}); give the full name or the id")
        raise RunNotFound(f"no run with id or name '{text}'")

    def get_run(self, ref: int | str) -> RunInfo:
        """A run by id, exact name, or unique name prefix; raises RunNotFound with what was tried."""
        with self._session() as s:
            return self._run_info(self._resolve(s, ref))

    def list_runs(self, status: str | Iterable[str] | None = None) -> list[RunInfo]:
        """All runs (optionally of some statuses), oldest first."""
        stmt = select(Run).order_by(Run.id)
        if status is not None:
            stmt = stmt.where(Run.status.in_([status] if isinstance(status, str) else list(status)))
        with self._session() as s:
            return [self._run_info(r) for r in s.scalars(stmt)]

    def update_run(self, run_id: int, **fields: Any) -> None:
        """Set run fields: step, total_steps, started_at, finished_at, heartbeat_at, device, pid, pid_started_at,
        host, exit_code, stderr_tail, error, name, preset. Times are aware datetimes (or unix seconds).
        The status is not among them: it changes only through `transition`."""
        if "status" in fields:
            raise TypeError("update_run() does not set the status; use Store.transition(run_id, to, expect=...)")
        unknown = set(fields) - _RUN_FIELDS
        if unknown:
            raise TypeError(f"update_run() cannot set {sorted(unknown)}; allowed: {sorted(_RUN_FIELDS)}")
        if "name" in fields:
            fields["name"] = _check_name(fields["name"])
        for key in ("stderr_tail", "error"):
            if key in fields:
                fields[key] = _tail(fields[key])
        if not fields:
            return
        try:
            with self._session(write=True) as s:
                if _changed(s.execute(update(Run).where(Run.id == run_id).values(**fields))) == 0:
                    raise RunNotFound(f"no run with id {run_id}")
        except IntegrityError as exc:
            raise ConfigError(f"a run named '{fields.get('name')}' already exists") from exc

    def transition(
        self,
        run_id: int,
        to: str,
        *,
        expect: str | Iterable[str] | None = None,
        session: int | None = None,
        **fields: Any,
    ) -> RunInfo:
        """Change a run's status: the one way any status changes. Returns the run as it is afterwards.

        One compare-and-set UPDATE: it applies only if the current status may go to `to` (RUN_TRANSITIONS),
        is among `expect` when given, and the run is still in `session` when given; otherwise nothing changes
        and RunStateError says what the run is. So of two processes starting the same run, exactly one wins.
        Going to "running" from a status that is not active starts a new session (session + 1) and drops
        pending control requests; a finished status drops them too. `fields` are those of `update_run`.
        """
        with self._session(write=True) as s:
            return self._run_info(self._transition(s, run_id, to, expect=expect, session=session, **fields))

    def _transition(
        self,
        s: Session,
        run_id: int,
        to: str,
        *,
        expect: str | Iterable[str] | None = None,
        session: int | None = None,
        **fields: Any,
    ) -> Run:
        if to not in RUN_STATUSES:
            raise ValueError(f"unknown run status {to!r}; one of {RUN_STATUSES}")
        unknown = set(fields) - _TRANSITION_FIELDS
        if unknown:
            raise TypeError(f"transition() cannot set {sorted(unknown)}; allowed: {sorted(_TRANSITION_FIELDS)}")
        allowed = {frm for frm, tos in RUN_TRANSITIONS.items() if to in tos}
        if expect is not None:
            wanted = {expect} if isinstance(expect, str) else set(expect)
            if not wanted & allowed:
                raise ValueError(f"a run can never go from {sorted(wanted)} to {to!r}")
            allowed &= wanted
        for key in ("stderr_tail", "error"):
            if key in fields:
                fields[key] = _tail(fields[key])
        values: dict[str, Any] = {**fields, "status": to}
        active = Run.status.in_(ACTIVE_RUN_STATUSES)
        if to == "running":  # a new worker session, unless a paused run continues
            values["session"] = case((active, Run.session), else_=Run.session + 1)
            for col in ("control_request", "control_requested_at", "control_session", "pid", "pid_started_at", "host"):
                if col not in fields:  # a new session drops the old one's requests and worker identity
                    values[col] = case((active, getattr(Run, col)), else_=None)
        elif to in FINISHED_RUN_STATUSES or to in ("queued", "created", "shipped"):
            values.update(control_request=None, control_requested_at=None, control_session=None)
        stmt = update(Run).where(Run.id == run_id, Run.status.in_(sorted(allowed)))
        if session is not None:
            stmt = stmt.where(Run.session == int(session))
        done = _changed(s.execute(stmt.values(**values).execution_options(synchronize_session=False)))
        run = s.get(Run, run_id, populate_existing=True)
        if run is None:
            raise RunNotFound(f"no run with id {run_id}")
        if done == 0:
            raise RunStateError(self._refusal(run, to, session))
        return run

    @staticmethod
    def _refusal(run: Run, to: str, session: int | None) -> str:
        if session is not None and run.session != session:
            return f"run '{run.name}' belongs to another worker session now ({run.status}); it cannot become {to}"
        if run.status in ACTIVE_RUN_STATUSES and to == "running":
            where = f" (pid {run.pid}{' on ' + run.host if run.host else ''})" if run.pid else ""
            return f"run '{run.name}' is {run.status} in another process{where}; stop it first"
        if run.status == "shipped" and to in ("running", "queued"):
            return f"run '{run.name}' came with UL Studio; it cannot be trained"
        return f"run '{run.name}' is {run.status}; it cannot become {to}"

    def heartbeat(self, run_id: int, step: int, *, session: int | None = None) -> bool:
        """Record that the run's worker is alive at `step` (workers call this every few seconds, paused too).

        With `session`: only while that session still owns the run (active, same session); returns False when
        it no longer does (the run was marked interrupted, or another worker started it), so the worker stops.
        """
        with self._session(write=True) as s:
            stmt = update(Run).where(Run.id == run_id).values(heartbeat_at=_now(), step=int(step))
            if session is not None:
                stmt = stmt.where(Run.session == int(session), Run.status.in_(ACTIVE_RUN_STATUSES))
            if _changed(s.execute(stmt)) == 0:
                if s.get(Run, run_id) is None:
                    raise RunNotFound(f"no run with id {run_id}")
                return False
            return True

    def request(self, run_id: int, action: str | None, *, session: int | None = None) -> bool:
        """Ask the run's worker to pause|resume|stop|sample_now|save_now (None clears the request).

        A request belongs to one worker session: `session` (default: the run's current one). A request for a
        session that has ended is not stored, and a later session never sees it. One request is pending at a
        time; a weaker one does not replace a stronger one (stop > pause/resume > sample_now/save_now), so a
        click on "sample" cannot swallow a "stop". Returns whether it was stored. The caller moves the status
        (e.g. to "stopping") with `transition` if it wants that shown at once.
        """
        if action is not None and action not in CONTROL_REQUESTS:
            raise ValueError(f"unknown request {action!r}; one of {CONTROL_REQUESTS}")
        with self._session(write=True) as s:
            run = s.get(Run, run_id)
            if run is None:
                raise RunNotFound(f"no run with id {run_id}")
            if session is not None and session != run.session:
                return False
            current = run.control_request if run.control_session == run.session else None
            if action is not None and current is not None and _REQUEST_PRIORITY[current] > _REQUEST_PRIORITY[action]:
                return False
            run.control_request = action
            run.control_requested_at = None if action is None else _now()
            run.control_session = None if action is None else run.session
            return True

    def pending_request(self, run_id: int, *, session: int | None = None) -> str | None:
        """The request waiting for the run's worker (of `session`, default the current one), without clearing it."""
        with self._session() as s:
            run = s.get(Run, run_id)
            if run is None:
                raise RunNotFound(f"no run with id {run_id}")
            target = run.session if session is None else session
            return run.control_request if run.control_session == target == run.session else None

    def take_request(self, run_id: int, *, session: int | None = None) -> str | None:
        """Read and clear the pending request in one transaction (the worker's side of `request`)."""
        with self._session(write=True) as s:
            run = s.get(Run, run_id)
            if run is None:
                raise RunNotFound(f"no run with id {run_id}")
            target = run.session if session is None else session
            if run.control_session != target or target != run.session:
                return None
            action, run.control_request, run.control_requested_at = run.control_request, None, None
            run.control_session = None
            return action

    def mark_stale_runs(self, timeout_s: float = 30.0) -> list[int]:
        """Mark active runs (running/paused/stopping) whose worker is gone as "interrupted" and fail their
        running jobs; returns their ids, so they can be resumed at once.

        A worker on this host is gone when its pid is dead or belongs to another process (its start time
        differs): seen at once. A worker elsewhere (or of unknown identity) is gone when its last sign of
        life is older than `timeout_s`. Each mark is a compare-and-set on the session it judged, so a run
        that a new worker started meanwhile is left alone.
        """
        now = _now()
        with self._session() as s:
            runs = s.scalars(select(Run).where(Run.status.in_(ACTIVE_RUN_STATUSES))).all()
        marked = []
        for run in runs:
            reason = self._gone(run, now, timeout_s)
            if reason is None:
                continue
            with contextlib.suppress(RunStateError), self._session(write=True) as s:
                self._transition(
                    s, run.id, "interrupted", expect=ACTIVE_RUN_STATUSES, session=run.session, finished_at=now,
                    error=run.error or reason,
                )  # fmt: skip
                s.execute(
                    update(Job)
                    .where(Job.run_id == run.id, Job.status == "running")
                    .values(status="failed", finished_at=now, error="the worker stopped responding")
                )
                marked.append(run.id)
        return marked

    @staticmethod
    def _gone(run: Run, now: datetime, timeout_s: float) -> str | None:
        """Why the run's worker is taken as gone, or None while it may be alive."""
        alive = liveness.worker_alive(run.pid, run.pid_started_at, run.host)
        if alive is False:
            return f"the worker (pid {run.pid}) is gone; resume to continue from the last checkpoint"
        if alive is None:
            last_sign = run.heartbeat_at or run.started_at or run.created_at
            if last_sign is not None and now - last_sign > timedelta(seconds=timeout_s):
                return f"the worker stopped responding (no heartbeat for {timeout_s:g} s)"
        return None

    def delete_run(self, run_id: int, *, remove_files: bool = True) -> None:
        """Delete a run with its metrics, checkpoints, artifacts and jobs (and its folder if `remove_files`).

        Big tables are emptied in chunks, each its own short transaction, so a worker writing to another
        run never waits long. Child runs keep their parent's checkpoint sha256 but lose the link.
        """
        info = self.get_run(run_id)
        if info.is_active:
            raise ULError(f"run '{info.name}' is {info.status}; stop it before deleting it")
        for table, key in (("metric_rollups", "run_id, key_id, level, bucket"), ("metrics", "run_id, key_id, step")):
            chunk = f"SELECT {key} FROM {table} WHERE run_id = ? LIMIT {_DELETE_CHUNK}"
            sql = f"DELETE FROM {table} WHERE ({key}) IN ({chunk})"
            while True:
                with self._cursor(write=True) as cur:
                    cur.execute(sql, (run_id,))
                    if cur.rowcount < _DELETE_CHUNK:
                        break
        with self._session(write=True) as s:
            s.execute(delete(Run).where(Run.id == run_id))
        if remove_files:
            shutil.rmtree(self.home / "runs" / str(int(run_id)), ignore_errors=True)

    # ---- metrics ---------------------------------------------------------------------------------------

    def log_metrics(self, run_id: int, rows: Iterable[tuple[int, float, Mapping[str, float]]]) -> int:
        """Write a batch of (step, wall_time, {key: value}) in one transaction; returns the values written.

        A step logged again (a resumed run) replaces the old value. Summary and plot rollups are updated in
        the same transaction, so readers never see them disagree with the series.
        """
        try:
            with self._cursor(write=True) as cur:
                return metric_ops.log(cur, run_id, rows, self._key_ids)
        except sqlite3.IntegrityError as exc:
            self._key_ids.clear()  # ids inserted by the rolled-back transaction do not exist
            if "FOREIGN KEY" in str(exc):
                raise RunNotFound(f"no run with id {run_id}") from exc
            raise
        except BaseException:
            self._key_ids.clear()
            raise

    def metric_keys(self, run_id: int) -> list[str]:
        """Names of the metrics a run has logged, sorted."""
        with self._cursor() as cur:
            rows = cur.execute(
                "SELECT k.name FROM metric_summary s JOIN metric_keys k ON k.id = s.key_id WHERE s.run_id = ? "
                "ORDER BY k.name",
                (run_id,),
            ).fetchall()
        return [r[0] for r in rows]

    def read_metric(
        self,
        run_id: int,
        key: str,
        *,
        max_points: int | None = None,
        step_range: tuple[int, int] | None = None,
    ) -> MetricSeries:
        """One metric as float64 arrays sorted by step (inclusive `step_range`).

        Without `max_points` the raw series (for smoothing and export). With it, a plot-ready series of at
        most 2·max_points points: the min and max sample of each bucket of `bucket_width` steps, read from
        the rollups, so the cost hardly depends on the run's length. An unknown key gives an empty series.
        """
        with self._cursor() as cur:
            kid = metric_ops.key_id(cur, key, self._key_ids)
            if kid is None:
                steps = values = walls = np.zeros(0, np.float64)
                width = None
            else:
                steps, values, walls, width = metric_ops.read(cur, run_id, kid, max_points, step_range)
        return MetricSeries(key, steps, values, walls, decimated=width is not None, bucket_width=width)

    def summary(self, run_id: int) -> dict[str, dict[str, Any]]:
        """key -> {last, min, max, last_step, first_step, count}; min/max over finite values (NaN if none)."""
        with self._cursor() as cur:
            return metric_ops.summary(cur, run_id)

    def truncate_metrics(self, run_id: int, after_step: int) -> int:
        """Delete the values logged after `after_step`; a run resuming from an older checkpoint calls this
        so the plot does not show the abandoned future. Returns the number of values deleted."""
        with self._cursor(write=True) as cur:
            return metric_ops.truncate(cur, run_id, int(after_step))

    def rebuild_metric_rollups(self, run_id: int) -> None:
        """Recompute a run's metric summary and rollups from the raw values (repair tool)."""
        with self._cursor(write=True) as cur:
            metric_ops.rebuild_all(cur, run_id)

    # ---- checkpoints -----------------------------------------------------------------------------------

    def _checkpoint_info(self, c: Checkpoint) -> CheckpointInfo:
        return CheckpointInfo(
            id=c.id, run_id=c.run_id, step=c.step, path=self.absolute(c.path), sha256=c.sha256, kind=c.kind,
            created_at=c.created_at, metrics=c.metrics, size_bytes=c.size_bytes,
        )  # fmt: skip

    def add_checkpoint(
        self,
        run_id: int,
        *,
        step: int,
        path: Path | str,
        sha256: str,
        kind: str = "full",
        metrics: Mapping[str, float] | None = None,
        size_bytes: int | None = None,
    ) -> CheckpointInfo:
        """Record a checkpoint file (kind: full = resumable training state, ema, weights).

        Saving the same (run, step, kind) again replaces the row. `size_bytes` defaults to the file's size.
        """
        path = Path(path)
        if size_bytes is None:
            full = path if path.is_absolute() else self.home / path
            with contextlib.suppress(OSError):
                size_bytes = full.stat().st_size
        values = {
            "path": self.relative(path), "sha256": sha256, "created_at": _now(),
            "metrics": dict(metrics) if metrics is not None else None, "size_bytes": size_bytes,
        }  # fmt: skip
        with self._session(write=True) as s:
            if s.get(Run, run_id) is None:
                raise RunNotFound(f"no run with id {run_id}")
            ck = s.scalar(select(Checkpoint).filter_by(run_id=run_id, step=int(step), kind=kind))
            if ck is None:
                ck = Checkpoint(run_id=run_id, step=int(step), kind=kind, **values)
                s.add(ck)
            else:
                for k, v in values.items():
                    setattr(ck, k, v)
            s.flush()
            return self._checkpoint_info(ck)

    def merge_checkpoint_metrics(self, checkpoint_id: int, values: Mapping[str, float]) -> CheckpointInfo:
        """Add (or replace) keys in a checkpoint's metrics, keeping the others: an evaluation of that
        checkpoint is recorded next to the training values it was saved with."""
        with self._session(write=True) as s:
            ck = s.get(Checkpoint, checkpoint_id)
            if ck is None:
                raise CheckpointError(f"no checkpoint with id {checkpoint_id}")
            ck.metrics = {**(ck.metrics or {}), **{k: float(v) for k, v in values.items()}}
            s.flush()
            return self._checkpoint_info(ck)

    def list_checkpoints(self, run_id: int, kind: str | None = None) -> list[CheckpointInfo]:
        """A run's checkpoints by step."""
        stmt = select(Checkpoint).where(Checkpoint.run_id == run_id).order_by(Checkpoint.step, Checkpoint.id)
        if kind is not None:
            stmt = stmt.where(Checkpoint.kind == kind)
        with self._session() as s:
            return [self._checkpoint_info(c) for c in s.scalars(stmt)]

    def latest_checkpoint(self, run_id: int, kind: str = "full") -> CheckpointInfo | None:
        """The checkpoint of that kind with the highest step (what a resume starts from)."""
        stmt = (
            select(Checkpoint)
            .where(Checkpoint.run_id == run_id, Checkpoint.kind == kind)
            .order_by(Checkpoint.step.desc())
            .limit(1)
        )
        with self._session() as s:
            c = s.scalar(stmt)
            return None if c is None else self._checkpoint_info(c)

    def get_checkpoint(self, checkpoint_id: int) -> CheckpointInfo:
        """A checkpoint by id; raises CheckpointError if there is none."""
        with self._session() as s:
            c = s.get(Checkpoint, checkpoint_id)
            if c is None:
                raise CheckpointError(f"no checkpoint with id {checkpoint_id}")
            return self._checkpoint_info(c)

    def delete_checkpoint_row(self, ref: int, *, path: Path | str | None = None, remove_file: bool = False) -> int:
        """Forget checkpoint rows (rotation of old ones); returns how many went.

        `delete_checkpoint_row(checkpoint_id)` forgets one checkpoint; `delete_checkpoint_row(run_id, path=p)`
        forgets the run's rows for file `p` (e.g. after the trainer deleted it). Cached reconstructions go
        with them; stage-2 runs keep the sha256 they were built from. `remove_file` deletes the files too.
        """
        if path is None:
            stmt = select(Checkpoint).where(Checkpoint.id == ref)
        else:
            stmt = select(Checkpoint).where(Checkpoint.run_id == ref, Checkpoint.path == self.relative(path))
        with self._session(write=True) as s:
            rows = s.scalars(stmt).all()
            files = [self.absolute(c.path) for c in rows]
            for c in rows:
                s.delete(c)
        if remove_file:
            for f in files:
                f.unlink(missing_ok=True)
        return len(rows)

    # ---- artifacts -------------------------------------------------------------------------------------

    def _artifact_info(self, a: Artifact) -> ArtifactInfo:
        return ArtifactInfo(
            id=a.id, run_id=a.run_id, kind=a.kind, step=a.step, path=self.absolute(a.path), seed=a.seed,
            params=a.params, created_at=a.created_at,
        )  # fmt: skip

    def add_artifact(
        self,
        run_id: int,
        *,
        kind: str,
        path: Path | str,
        step: int | None = None,
        seed: int | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> ArtifactInfo:
        """Record a file a run produced: preview | reconstruction | sample | video | export | other."""
        if kind not in ARTIFACT_KINDS:
            raise ValueError(f"unknown artifact kind {kind!r}; one of {ARTIFACT_KINDS}")
        with self._session(write=True) as s:
            if s.get(Run, run_id) is None:
                raise RunNotFound(f"no run with id {run_id}")
            a = Artifact(
                run_id=run_id, kind=kind, step=step, path=self.relative(path), seed=seed,
                params=dict(params) if params is not None else None, created_at=_now(),
            )  # fmt: skip
            s.add(a)
            s.flush()
            return self._artifact_info(a)

    def list_artifacts(self, run_id: int, kind: str | None = None) -> list[ArtifactInfo]:
        """A run's artifacts (optionally of one kind), by step then creation."""
        stmt = select(Artifact).where(Artifact.run_id == run_id).order_by(Artifact.step, Artifact.id)
        if kind is not None:
            stmt = stmt.where(Artifact.kind == kind)
        with self._session() as s:
            return [self._artifact_info(a) for a in s.scalars(stmt)]

    def delete_artifact(self, artifact_id: int, *, remove_file: bool = False) -> None:
        """Forget an artifact (and delete its file with `remove_file`)."""
        with self._session(write=True) as s:
            a = s.get(Artifact, artifact_id)
            if a is None:
                return
            path = self.absolute(a.path)
            s.delete(a)
        if remove_file:
            path.unlink(missing_ok=True)

    # ---- reconstruction cache --------------------------------------------------------------------------

    def cache_get(self, input_sha256: str, checkpoint_id: int, params_hash: str) -> dict[str, Any] | None:
        """{"path": absolute Path, "metrics": dict | None, "created_at": datetime} of a cached reconstruction,
        or None; an entry whose file has gone is dropped and reported as a miss."""
        stmt = select(Reconstruction).filter_by(
            input_sha256=input_sha256, checkpoint_id=checkpoint_id, params_hash=params_hash
        )
        with self._session() as s:
            r = s.scalar(stmt)
            if r is None:
                return None
            path = self.absolute(r.path)
            hit: dict[str, Any] = {"path": path, "metrics": r.metrics, "created_at": r.created_at}
            rid = r.id
        if not path.exists():
            with self._session(write=True) as s:
                s.execute(delete(Reconstruction).where(Reconstruction.id == rid))
            return None
        return hit

    def cache_put(
        self,
        input_sha256: str,
        checkpoint_id: int,
        params_hash: str,
        *,
        path: Path | str,
        metrics: Mapping[str, Any] | None = None,
    ) -> None:
        """Remember the output of reconstructing `input_sha256` with a checkpoint and parameters (replaces)."""
        stored, values = self.relative(path), dict(metrics) if metrics is not None else None
        with self._session(write=True) as s:
            if s.get(Checkpoint, checkpoint_id) is None:
                raise CheckpointError(f"no checkpoint with id {checkpoint_id}")
            r = s.scalar(
                select(Reconstruction).filter_by(
                    input_sha256=input_sha256, checkpoint_id=checkpoint_id, params_hash=params_hash
                )
            )
            if r is None:
                s.add(
                    Reconstruction(
                        input_sha256=input_sha256,
                        checkpoint_id=checkpoint_id,
                        params_hash=params_hash,
                        created_at=_now(),
                        path=stored,
                        metrics=values,
                    )
                )
            else:
                r.path, r.metrics, r.created_at = stored, values, _now()

    # ---- evaluation cache ------------------------------------------------------------------------------

    @staticmethod
    def evaluation_key_hash(key: Mapping[str, Any]) -> str:
        """sha256 of the settings an evaluation was computed with (the cache's second key)."""
        return hashlib.sha256(json.dumps(dict(key), sort_keys=True, default=str).encode()).hexdigest()

    def evaluation_get(self, checkpoint_id: int, key: Mapping[str, Any]) -> dict[str, Any] | None:
        """The result cached for evaluating `checkpoint_id` with settings `key`, or None."""
        stmt = select(Evaluation.result).filter_by(checkpoint_id=checkpoint_id, key_hash=self.evaluation_key_hash(key))
        with self._session() as s:
            result = s.scalar(stmt)
        return dict(result) if result is not None else None

    def evaluation_put(self, checkpoint_id: int, key: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        """Remember what evaluating `checkpoint_id` with settings `key` gave (replaces an earlier result)."""
        key_hash = self.evaluation_key_hash(key)
        with self._session(write=True) as s:
            if s.get(Checkpoint, checkpoint_id) is None:
                raise CheckpointError(f"no checkpoint with id {checkpoint_id}")
            row = s.scalar(select(Evaluation).filter_by(checkpoint_id=checkpoint_id, key_hash=key_hash))
            if row is None:
                s.add(Evaluation(checkpoint_id=checkpoint_id, key_hash=key_hash, key=dict(key), result=dict(result),
                                 created_at=_now()))  # fmt: skip
            else:
                row.result, row.created_at = dict(result), _now()

    # ---- queue -----------------------------------------------------------------------------------------

    @staticmethod
    def _job_info(j: Job) -> JobInfo:
        return JobInfo(
            id=j.id, run_id=j.run_id, kind=j.kind, status=j.status, position=j.position, device=j.device,
            attempts=j.attempts, created_at=j.created_at, started_at=j.started_at, finished_at=j.finished_at,
            exit_code=j.exit_code, stderr_tail=j.stderr_tail, error=j.error,
        )  # fmt: skip

    @staticmethod
    def _job(session: Session, job_id: int) -> Job:
        job = session.get(Job, job_id)
        if job is None:
            raise ULError(f"no job with id {job_id}")
        return job

    def enqueue(self, run_id: int, kind: str = "train", device: str = "cpu") -> JobInfo:
        """Append a job to the queue; a train job marks its run "queued" (one pending train job per run)."""
        with self._session(write=True) as s:
            run = s.get(Run, run_id)
            if run is None:
                raise RunNotFound(f"no run with id {run_id}")
            if kind == "train":
                if run.status == "shipped":
                    raise ULError(f"run '{run.name}' came with UL Studio; it cannot be trained")
                if run.status in ACTIVE_RUN_STATUSES:
                    raise ULError(f"run '{run.name}' is {run.status}; it cannot be queued again now")
                open_jobs = (Job.run_id == run_id, Job.kind == "train", Job.status.in_(("queued", "running")))
                pending = s.scalar(select(Job.id).where(*open_jobs))
                if pending is not None:
                    raise ULError(f"run '{run.name}' is already in the queue")
                self._transition(s, run_id, "queued")
            last = s.scalar(select(func.max(Job.position)).where(Job.status == "queued"))
            job = Job(
                run_id=run_id, kind=kind, status="queued", position=(last + 1) if last is not None else 0,
                device=device, attempts=0, created_at=_now(),
            )  # fmt: skip
            s.add(job)
            s.flush()
            return self._job_info(job)

    def list_jobs(self, status: str | Iterable[str] | None = None, *, run_id: int | None = None) -> list[JobInfo]:
        """Jobs: running first, then queued in queue order, then finished ones newest first."""
        rank = func.iif(Job.status == "running", 0, func.iif(Job.status == "queued", 1, 2))
        stmt = select(Job).order_by(rank, Job.position, Job.id.desc())
        if status is not None:
            stmt = stmt.where(Job.status.in_([status] if isinstance(status, str) else list(status)))
        if run_id is not None:
            stmt = stmt.where(Job.run_id == run_id)
        with self._session() as s:
            return [self._job_info(j) for j in s.scalars(stmt)]

    def move_job(self, job_id: int, new_position: int) -> None:
        """Move a queued job to index `new_position` (0 = next) of the queued jobs; the rest keep their order."""
        with self._session(write=True) as s:
            job = self._job(s, job_id)
            if job.status != "queued":
                raise ULError(f"job {job_id} is {job.status}; only queued jobs can be moved")
            queued = [
                j for j in s.scalars(select(Job).where(Job.status == "queued").order_by(Job.position, Job.id))
                if j.id != job_id
            ]  # fmt: skip
            queued.insert(max(0, min(int(new_position), len(queued))), job)
            for i, j in enumerate(queued):
                j.position = i

    def cancel_job(self, job_id: int) -> bool:
        """Cancel a queued job (False if it already started or ended: stop its run instead)."""
        with self._session(write=True) as s:
            job = self._job(s, job_id)
            if job.status != "queued":
                return False
            job.status, job.finished_at = "cancelled", _now()
            run = s.get(Run, job.run_id)
            if job.kind == "train" and run is not None and run.status == "queued":
                self._transition(s, run.id, "created" if run.started_at is None else "stopped", expect="queued")
            return True

    def next_job(self, device: str | None = None) -> JobInfo | None:
        """Claim the first queued job (for `device`, or any): it becomes "running" with one more attempt.

        Atomic, so two queue runners never start the same job. The caller checks the device is free.
        """
        stmt = select(Job).where(Job.status == "queued").order_by(Job.position, Job.id).limit(1)
        if device is not None:
            stmt = stmt.where(Job.device == device)
        with self._session(write=True) as s:
            job = s.scalar(stmt)
            if job is None:
                return None
            job.status, job.started_at, job.attempts = "running", _now(), job.attempts + 1
            return self._job_info(job)

    def update_job(self, job_id: int, **fields: Any) -> None:
        """Set job fields: status, position, device, attempts, started_at, finished_at, exit_code,
        stderr_tail, error."""
        unknown = set(fields) - _JOB_FIELDS
        if unknown:
            raise TypeError(f"update_job() cannot set {sorted(unknown)}; allowed: {sorted(_JOB_FIELDS)}")
        if "status" in fields and fields["status"] not in JOB_STATUSES:
            raise ValueError(f"unknown job status {fields['status']!r}; one of {JOB_STATUSES}")
        for key in ("stderr_tail", "error"):
            if key in fields:
                fields[key] = _tail(fields[key])
        with self._session(write=True) as s:
            if _changed(s.execute(update(Job).where(Job.id == job_id).values(**fields))) == 0:
                raise ULError(f"no job with id {job_id}")
