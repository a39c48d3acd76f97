"""Optuna storages for one study shared by many workers: heartbeats, safe table creation, and a claim lock.

RDB storages (SQLite, PostgreSQL, MySQL) get heartbeats: a trial whose worker died stops beating, is failed once
``grace_s`` has passed (when some worker next asks for a trial, or calls ``fail_stale_trials``) and Optuna's
``RetryHeartbeatStaleTrialCallback`` queues its plan again. ``journal:///path`` is Optuna's
``JournalStorage(JournalFileBackend(path))`` for a shared file system: it has no heartbeat, so a trial whose worker
died stays RUNNING and is never retried.

The claim lock serialises "count the study's trials, then start one" between processes (``flock`` on
``<file>.claim`` beside a SQLite or journal file, an advisory lock on PostgreSQL), so K workers finish exactly
``n_trials`` trials, not up to K - 1 more.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
import warnings
from pathlib import Path
from typing import Any, Protocol

import optuna

from ..errors import MopruneError, SpecError

_CREATE_ATTEMPTS = 5  # two processes creating the tables of an empty database race; the loser retries
SQLITE_TIMEOUT_S = 60.0  # how long a SQLite writer waits for another process's write lock ("database is locked")


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (relative to the current directory), or None for other URLs and memory."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///").partition("?")[0]
    return None if path in ("", ":memory:") else Path(path)


def journal_path(url: str) -> Path | None:
    """The file of a ``journal:///path`` URL (same slashes as SQLite: four for an absolute path)."""
    return Path(url.removeprefix("journal:///")) if url.startswith("journal:///") else None


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        import sqlalchemy

        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


def make_storage(url: str, *, heartbeat_s: int = 30, grace_s: int = 120, max_retry: int = 2
                 ) -> optuna.storages.BaseStorage:
    """Open (and on first use create) the storage at ``url``; errors say what to check (exit 1, or 2 for a bad URL)."""
    journal = journal_path(url)
    if journal is not None:
        return _journal_storage(journal)
    if "://" not in url:
        raise SpecError(f"storage: {url!r} is not a storage URL; use e.g. sqlite:///runs/study.db, "
                        "postgresql://user@host/db or journal:///shared/study.log")
    path = sqlite_path(url)
    engine_kwargs: dict[str, Any] = {}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT_S}
    elif url.startswith("postgresql"):
        # fail in seconds on a host that does not answer; re-open connections a server restart has closed
        engine_kwargs.update(pool_pre_ping=True, connect_args={"connect_timeout": 10})
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_s, grace_period=grace_s,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                        max_retry=max_retry),
                )
        except Exception as exc:
            if attempt + 1 < _CREATE_ATTEMPTS and _is_creation_race(exc):
                time.sleep(random.uniform(0.2, 1.0))
                continue
            raise MopruneError(_open_failure(url, exc)) from None
    raise AssertionError("unreachable")


def _journal_storage(path: Path) -> optuna.storages.BaseStorage:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    except OSError as exc:
        raise MopruneError(f"cannot open journal storage {str(path)!r}: {exc.strerror}; use a folder you can write "
                           "to (on a file system every host mounts)") from None


def _is_creation_race(exc: Exception) -> bool:
    """Errors of two processes creating the same tables at once (seen on SQLite and PostgreSQL), not of a bad URL."""
    import sqlalchemy.exc as sa

    if isinstance(exc, (sa.IntegrityError, sa.ProgrammingError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, sa.OperationalError) and ("already exists" in text or "locked" in text)


def _open_failure(url: str, exc: Exception) -> str:
    shown = redact(url)
    first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, ImportError) or "No module named" in str(exc):
        return (f"cannot open storage {shown}: the database driver is missing ({first}); "
                "install it with: pip install 'moprune[postgres]'")
    if sqlite_path(url) is not None:
        return (f"cannot open storage {shown}: {first}; check that {sqlite_path(url).parent} is a folder you can "
                "write to (or pass --storage with another path)")
    return (f"cannot open storage {shown}: {first}. Check that the server is running and reachable from this host, "
            "and that the user, password and database in the URL exist (create the database once with: "
            "createdb NAME); or run on a local SQLite file with --storage sqlite:///runs/NAME.db")


def has_heartbeat(storage: optuna.storages.BaseStorage) -> bool:
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(storage)


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail trials whose worker stopped beating (and queue their plans again); a no-op without heartbeats."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


class Claim(Protocol):
    """A lock held from "count the trials" until the new trial is RUNNING in the storage."""

    def acquire(self) -> None: ...

    def release(self) -> None: ...


class NoClaim:
    """For storages without a lock: two processes may both start the last trial (one extra finishes)."""

    def acquire(self) -> None:
        pass

    def release(self) -> None:
        pass


class FileClaim:
    """A lock file beside the storage (``filelock``: ``flock`` on POSIX): every process on this host, or on a file
    system with working locks."""

    def __init__(self, path: Path):
        from filelock import FileLock

        self.path = path
        self._lock = FileLock(str(path), thread_local=False)

    def acquire(self) -> None:
        self._lock.acquire()

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release(force=True)


class AdvisoryClaim:
    """A PostgreSQL session-level advisory lock: every host; the server frees it when a holder's connection dies."""

    def __init__(self, engine: Any, name: str):
        self.engine, self.conn = engine, None
        self.key = int.from_bytes(hashlib.sha256(f"moprune:{name}".encode()).digest()[:8], "big", signed=True)

    def acquire(self) -> None:
        import sqlalchemy

        if self.conn is None:
            conn = self.engine.connect()
            try:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": self.key})
            except BaseException:
                conn.close()
                raise
            self.conn = conn

    def release(self) -> None:
        import sqlalchemy

        if self.conn is not None:
            conn, self.conn = self.conn, None
            try:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            finally:
                conn.close()


def claim_for(url: str, storage: optuna.storages.BaseStorage, study_name: str) -> Claim:
    """The strongest cross-process lock this storage offers."""
    file = sqlite_path(url) or journal_path(url)
    if file is not None and os.name == "posix":
        return FileClaim(file.with_name(file.name + ".claim"))  # not ".lock": the journal uses that
    if url.startswith("postgresql") and hasattr(storage, "engine"):
        return AdvisoryClaim(storage.engine, study_name)
    return NoClaim()
