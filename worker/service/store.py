"""The durable job store: every accepted job and every kept outcome, in one SQLite file.

Rows hold the job's id, its owner identity, its state, wall-clock times, the submission (while the
job is unfinished) and the outcome (RESULT, ERROR or CANCELLED) once finished, both as
``encode_single`` blobs. Outcomes live on disk only: the server reads one back when a client
attaches, so kept results cost no memory. A file lock keeps two workers off one store.

On start, ``recover`` returns the queued jobs to re-queue and marks jobs that were running when the
previous process died FAILED with ``worker_restarted``.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from animus3d_shared import protocol as p

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    state TEXT NOT NULL,
    submitted REAL NOT NULL,
    finished REAL,
    submit BLOB,
    outcome BLOB,
    outcome_bytes INTEGER NOT NULL DEFAULT 0
)
"""


class StoreError(RuntimeError):
    """The store cannot be opened (locked by another worker, unreadable)."""


@dataclass(frozen=True)
class StoredJob:
    id: str
    identity: str
    state: str
    submitted: float
    finished: float | None
    submit: Any  # p.Submit for unfinished jobs, else None


class JobStore:
    def __init__(self, path: str | Path, limits: p.Limits) -> None:
        self.path = Path(path)
        self.limits = limits
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(str(self.path) + ".lock", "w")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            raise StoreError(f"the job store {self.path} is in use by another worker") from None
        try:
            self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            self.close()
            raise StoreError(f"cannot open the job store {self.path}: {exc}") from None
        os.chmod(self.path, 0o600)

    def close(self) -> None:
        db = getattr(self, "db", None)
        if db is not None:
            db.close()
            self.db = None
        if not self._lock_file.closed:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()

    # ---- writes ------------------------------------------------------------------------------
    def add(self, job_id: str, identity: str, submit: p.Submit, submitted: float) -> None:
        self.db.execute("INSERT INTO jobs (id, identity, state, submitted, submit) VALUES (?, ?, 'queued', ?, ?)",
                        (job_id, identity, submitted, p.encode_single(submit)))

    def set_running(self, job_id: str) -> None:
        self.db.execute("UPDATE jobs SET state = 'running' WHERE id = ?", (job_id,))

    def finish(self, job_id: str, state: str, outcome: Any, finished: float) -> int:
        """Stores the outcome message; returns its size in bytes."""
        blob = p.encode_single(outcome)
        self.db.execute("UPDATE jobs SET state = ?, finished = ?, submit = NULL, outcome = ?, outcome_bytes = ? "
                        "WHERE id = ?", (state, finished, blob, len(blob), job_id))
        return len(blob)

    def delete(self, job_ids: list[str]) -> None:
        self.db.executemany("DELETE FROM jobs WHERE id = ?", [(j,) for j in job_ids])

    # ---- reads -------------------------------------------------------------------------------
    def outcome(self, job_id: str) -> Any | None:
        row = self.db.execute("SELECT outcome FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None or row[0] is None:
            return None
        return p.decode_single(row[0], self.limits)

    def recover(self, now: float | None = None) -> tuple[list[StoredJob], list[StoredJob]]:
        """(unfinished jobs to queue again, in submission order; finished jobs with their sizes).

        A job that was running is finished here as FAILED ``worker_restarted``; one whose stored
        submission no longer decodes as FAILED ``internal``.
        """
        now = time.time() if now is None else now
        queued: list[StoredJob] = []
        finished: list[StoredJob] = []
        rows = self.db.execute("SELECT id, identity, state, submitted, finished, submit FROM jobs "
                               "ORDER BY submitted").fetchall()
        for job_id, identity, state, submitted, done_at, submit_blob in rows:
            if state == "running":
                self.finish(job_id, "failed", p.Error(
                    code="worker_restarted", message="the worker restarted while this job ran; submit it again",
                    job_id=job_id), now)
                state, done_at = "failed", now
            elif state == "queued":
                try:
                    submit = p.decode_single(submit_blob, self.limits)
                except p.ProtocolError as exc:
                    self.finish(job_id, "failed", p.Error(code="internal", message=f"stored job unreadable: "
                                                          f"{exc.message}", job_id=job_id), now)
                    state, done_at = "failed", now
                else:
                    queued.append(StoredJob(job_id, identity, state, submitted, None, submit))
                    continue
            finished.append(StoredJob(job_id, identity, state, submitted, done_at, None))
        return queued, finished

    def outcome_sizes(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT id, outcome_bytes FROM jobs WHERE outcome IS NOT NULL").fetchall())
