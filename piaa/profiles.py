"""ProfileStore: adapted users kept in one SQLite file, safe for many processes at once.

One row per user holds everything needed to score for that user later, in another process:
the adapted per-user state as safetensors bytes (no pickle), the ratings it was adapted from,
the seed, the model id and piaa version, and created/updated timestamps. The store belongs to
one model (the first profile saved fixes its model id); a profile made by another model is
refused, never mixed in.

Concurrency: WAL journal (readers never block the writer), a busy timeout, and every write in
one `BEGIN IMMEDIATE` transaction, so re-adapting a user replaces the whole row atomically.
Each operation opens its own short-lived connection, which keeps the store safe to use from
forked or spawned workers. A file that is not a readable store is reported and left untouched.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pandas as pd

from piaa.errors import PiaaError

if TYPE_CHECKING:  # imported lazily at run time: torch is not needed to list or delete profiles
    from piaa.personalize import Personalizer, Profile

SCHEMA_VERSION = 1
DEFAULT_NAME = "profiles.sqlite"
BUSY_TIMEOUT_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS profiles (
    user TEXT PRIMARY KEY,
    model_id TEXT NOT NULL,
    method TEXT NOT NULL,
    piaa_version TEXT NOT NULL,
    n_ratings INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    ratings TEXT NOT NULL,
    big_five TEXT,
    state BLOB NOT NULL,
    state_sha256 TEXT NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
"""
_COLUMNS = ("user", "model_id", "method", "piaa_version", "n_ratings", "seed", "ratings", "big_five", "state", "state_sha256", "created", "updated")


class ProfileError(PiaaError):
    """A missing, foreign or damaged profile, or a store file that cannot be read."""


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


class ProfileStore:
    """Per-user profiles in one SQLite file (default `<run>/profiles.sqlite`).

    `model` (a `piaa.load(...)` result) is used to rebuild loaded profiles; without it the store
    loads the run it recorded when the first profile was saved.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, model: "Personalizer | None" = None):
        if path is None:
            if model is None:
                raise ProfileError("ProfileStore needs a path or a model (the default store lives next to the model's run)")
            path = Path(model.path) / DEFAULT_NAME
        self.path = Path(path)
        self._model = model

    def __repr__(self) -> str:
        return f"ProfileStore({str(self.path)!r})"

    # -- connections --------------------------------------------------------------------------
    def _fail(self, exc: BaseException) -> ProfileError:
        if isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc)):
            return ProfileError(f"{self.path}: still locked by another process after {BUSY_TIMEOUT_S:g} s ({exc}); try again")
        return ProfileError(
            f"{self.path}: not a readable profile store ({exc}); the file was left as it is "
            "(restore it from a backup or move it aside to start a new store)"
        )

    @contextlib.contextmanager
    def _connect(self, *, write: bool) -> Iterator[sqlite3.Connection | None]:
        """A connection inside one transaction (IMMEDIATE for writes); None if reading a missing store."""
        if not write and not self.path.exists():
            yield None
            return
        if write:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._fail(exc) from None
        try:
            try:
                con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
                if write:
                    self._ensure_schema(con)
                con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                if not write:
                    tables = self._tables(con)
                    if tables - {"profiles", "store_meta"}:
                        raise self._foreign()
                    if not tables:  # an empty SQLite file: no profiles yet
                        con.execute("ROLLBACK")
                        yield None
                        return
                    if tables != {"profiles", "store_meta"}:
                        raise self._foreign()
                    self._check_version(con)
            except sqlite3.DatabaseError as exc:
                raise self._fail(exc) from None
            try:
                yield con
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    con.execute("ROLLBACK")
                if isinstance(exc, sqlite3.DatabaseError):
                    raise self._fail(exc) from None
                raise
            try:
                con.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                raise self._fail(exc) from None
        finally:
            con.close()

    @staticmethod
    def _tables(con: sqlite3.Connection) -> set[str]:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'")}

    def _foreign(self) -> ProfileError:
        return ProfileError(f"{self.path} is an SQLite database but not a piaa profile store; it was left as it is")

    def _ensure_schema(self, con: sqlite3.Connection) -> None:
        """WAL mode and tables, created once; retried while another process is creating them."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                tables = self._tables(con)
                fresh = not {"profiles", "store_meta"} <= tables
                if tables - {"profiles", "store_meta"}:  # one snapshot: safe while another process creates ours
                    raise self._foreign()
                if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    con.execute("PRAGMA journal_mode = WAL")
                con.execute("PRAGMA synchronous = FULL")
                if fresh:
                    # Idempotent (IF NOT EXISTS / OR IGNORE), so two processes creating at once is harmless.
                    con.executescript(
                        "BEGIN IMMEDIATE;" + _SCHEMA
                        + f"INSERT OR IGNORE INTO store_meta VALUES ('schema_version', '{SCHEMA_VERSION}'); COMMIT;"
                    )
                self._check_version(con)
                return
            except sqlite3.OperationalError as exc:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _check_version(self, con: sqlite3.Connection) -> None:
        row = con.execute("SELECT value FROM store_meta WHERE key = 'schema_version'").fetchone()
        found = row[0] if row else "none"
        if str(found) == str(SCHEMA_VERSION):
            return
        newer = str(found).isdigit() and int(found) > SCHEMA_VERSION
        hint = "it was written by a newer piaa; upgrade piaa to read it" if newer else "it is not a store this piaa can read"
        raise ProfileError(f"{self.path}: profile store schema version {found}, this piaa reads version {SCHEMA_VERSION}; {hint} (the file was left as it is)")

    def _meta(self, con: sqlite3.Connection) -> dict[str, str]:
        return dict(con.execute("SELECT key, value FROM store_meta").fetchall())

    # -- the model this store belongs to ----------------------------------------------------------
    def model_id(self) -> str | None:
        """The model id fixed by the first saved profile (None for an empty or missing store)."""
        with self._connect(write=False) as con:
            return None if con is None else self._meta(con).get("model_id")

    def _refuse_foreign(self, meta: dict[str, str], model_id: str, what: str) -> None:
        owner = meta.get("model_id")
        if owner is not None and owner != model_id:
            raise ProfileError(
                f"{self.path} holds profiles of model {owner} (run {meta.get('run', '?')}), but {what} is model {model_id}; "
                "profiles of different models are never mixed (use that run, or another store)"
            )

    def model(self) -> "Personalizer":
        """The model used to rebuild profiles: the one given, else the run recorded in the store."""
        if self._model is None:
            with self._connect(write=False) as con:
                meta = {} if con is None else self._meta(con)
            run = meta.get("run")
            if run is None:
                raise ProfileError(f"{self.path} is empty, so it names no model; pass model=piaa.load(RUN)")
            from piaa.personalize import load

            try:
                self._model = load(run)
            except PiaaError as exc:
                raise ProfileError(f"{self.path} was made with run {run}, which cannot be loaded ({exc}); pass model=piaa.load(RUN)") from None
        return self._model

    # -- operations ---------------------------------------------------------------------------------
    def save(self, profile: "Profile") -> "Profile":
        """Insert or atomically replace `profile.user`'s profile. Keeps the first `created` time."""
        blob = profile.state_bytes()
        if self._model is not None:
            self._refuse_foreign({"model_id": self._model.model_id, "run": str(self._model.path)}, profile.model_id, "this profile")
        row = profile.to_row(blob)
        with self._connect(write=True) as con:
            meta = self._meta(con)
            self._refuse_foreign(meta, profile.model_id, "this profile")
            if "model_id" not in meta:
                run = str(Path(profile.model.path).resolve()) if profile.model is not None else ""
                con.executemany("INSERT INTO store_meta VALUES (?, ?)", [("model_id", profile.model_id), ("run", run)])
            old = con.execute("SELECT created FROM profiles WHERE user = ?", (profile.user,)).fetchone()
            row["created"] = old[0] if old else row["created"]
            row["updated"] = now()
            names = ", ".join(_COLUMNS)
            marks = ", ".join("?" for _ in _COLUMNS)
            con.execute(f"INSERT OR REPLACE INTO profiles ({names}) VALUES ({marks})", [row[c] for c in _COLUMNS])
        profile.created, profile.updated, profile.stored_bytes = row["created"], row["updated"], len(blob)
        return profile

    def _row(self, user: str) -> dict[str, Any]:
        with self._connect(write=False) as con:
            found = None if con is None else con.execute(f"SELECT {', '.join(_COLUMNS)} FROM profiles WHERE user = ?", (str(user),)).fetchone()
            if found is None:
                raise self._unknown(con, user)
            return dict(zip(_COLUMNS, found))

    def _unknown(self, con: sqlite3.Connection | None, user: str) -> ProfileError:
        import difflib

        users = [] if con is None else [r[0] for r in con.execute("SELECT user FROM profiles ORDER BY user")]
        close = difflib.get_close_matches(str(user), users, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        known = f" ({len(users)} stored: {', '.join(users[:5])}{', …' if len(users) > 5 else ''})" if users else " (the store is empty)"
        return ProfileError(f"no profile for user {str(user)!r} in {self.path}{hint}{known}")

    def load(self, user: str) -> "Profile":
        """The stored profile of `user`, rebuilt and ready to score."""
        row = self._row(user)
        model = self.model()
        self._refuse_foreign({"model_id": model.model_id, "run": str(model.path)}, row["model_id"], f"the profile of {user!r}")
        if hashlib.sha256(row["state"]).hexdigest() != row["state_sha256"]:
            raise ProfileError(f"{self.path}: the stored state of user {user!r} is damaged (checksum mismatch); re-adapt this user")
        return model.restore(row)

    def info(self, user: str) -> dict[str, Any]:
        """Metadata and ratings of one profile, without rebuilding it (no model needed)."""
        row = self._row(user)
        out = {k: row[k] for k in _COLUMNS if k not in ("state", "ratings", "big_five")}
        out["bytes"] = len(row["state"])
        try:
            out["ratings"] = json.loads(row["ratings"])
            out["big_five"] = json.loads(row["big_five"]) if row["big_five"] else None
        except json.JSONDecodeError:
            raise ProfileError(f"{self.path}: the stored ratings of user {user!r} are damaged; re-adapt this user") from None
        return out

    def list(self) -> pd.DataFrame:
        """One row per stored user: user, method, n_ratings, bytes, created, updated (sorted by user)."""
        cols = ["user", "method", "model_id", "n_ratings", "bytes", "created", "updated"]
        with self._connect(write=False) as con:
            rows = [] if con is None else con.execute(
                "SELECT user, method, model_id, n_ratings, length(state), created, updated FROM profiles ORDER BY user"
            ).fetchall()
        return pd.DataFrame(rows, columns=cols)

    def users(self) -> list[str]:
        return self.list()["user"].tolist()

    def delete(self, user: str) -> None:
        """Remove `user`'s profile; an unknown user is an error (nothing is deleted)."""
        if not self.path.exists():  # don't create a store just to find it empty
            raise self._unknown(None, user)
        with self._connect(write=True) as con:
            if con.execute("DELETE FROM profiles WHERE user = ?", (str(user),)).rowcount == 0:
                raise self._unknown(con, user)

    def __contains__(self, user: object) -> bool:
        with self._connect(write=False) as con:
            return con is not None and con.execute("SELECT 1 FROM profiles WHERE user = ?", (str(user),)).fetchone() is not None

    def __len__(self) -> int:
        with self._connect(write=False) as con:
            return 0 if con is None else int(con.execute("SELECT count(*) FROM profiles").fetchone()[0])


def encode_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def stores_beside(run_dir: str | os.PathLike, *, exclude: str | os.PathLike | None = None) -> list[tuple[Path, int]]:
    """Profile stores of the other runs next to `run_dir` that hold profiles, as (path, count).

    Profiles belong to the run that adapted them (`<run>/profiles.sqlite`), so after training a new
    run the latest store is empty while the old one still holds everyone: this finds them."""
    found = []
    root = Path(run_dir).resolve().parent
    skip = Path(exclude).resolve() if exclude is not None else None
    for candidate in sorted(root.glob(f"*/{DEFAULT_NAME}")):
        if skip is not None and candidate.resolve() == skip:
            continue
        try:
            count = len(ProfileStore(candidate))
        except PiaaError:
            continue
        if count:
            found.append((candidate, count))
    return found
