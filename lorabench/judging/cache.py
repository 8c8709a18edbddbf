"""An on-disk cache of judge replies (sqlite), so that no judgement is ever paid for twice.

The key is the SHA-256 of the judge model, its sampling settings and the full prompt text; the
prompt contains the instruction, question, gold answer and model answer, so any change to one of
those is a new key. Rows are committed one by one as replies arrive: an interrupted evaluation
keeps everything it paid for. Only replies are stored (a parse failure's reply too, since it
was paid for); errors are not, so they are retried next time. Nothing secret is stored: no
headers, no API key.

Each row also records the model that answered (`served_model`: the reply's `model` field, e.g.
`gpt-3.5-turbo-0125` for a request to `gpt-3.5-turbo`), so a fully cached evaluation still
knows which model produced its scores. Caches written before that column existed are migrated
in place (a nullable column is added; their old rows have no served model).

Several processes may share one cache file (sqlite WAL mode with a busy timeout).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA_VERSION = 1


def cache_key(model: str, prompt: str, **settings: object) -> str:
    """SHA-256 hex digest of the judge model, its settings (e.g. temperature) and the prompt."""
    payload = json.dumps(
        {"v": SCHEMA_VERSION, "model": model, "settings": settings, "prompt": prompt},
        ensure_ascii=False,
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedReply:
    """A judge reply as it was bought."""

    reply: str
    prompt_tokens: int
    completion_tokens: int
    served_model: str | None = None
    """The model named in the reply (None: unknown, e.g. a row cached before it was recorded)."""


class JudgeCache:
    """Replies by key in a sqlite file (`":memory:"` for a cache that lives with the object)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by the event loop and the calling thread, guarded by a lock.
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        with self._lock, self._conn:
            if self.path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS replies ("
                " key TEXT PRIMARY KEY, model TEXT NOT NULL, prompt TEXT NOT NULL,"
                " reply TEXT NOT NULL, prompt_tokens INTEGER NOT NULL,"
                " completion_tokens INTEGER NOT NULL, created REAL NOT NULL,"
                " served_model TEXT)"
            )
            self._migrate()

    def _migrate(self) -> None:
        """Add the `served_model` column to a cache created before it existed."""
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(replies)")}
        if "served_model" in columns:
            return
        try:
            self._conn.execute("ALTER TABLE replies ADD COLUMN served_model TEXT")
        except sqlite3.OperationalError as err:
            if "duplicate column" not in str(err):  # another process migrated it just now
                raise

    def get(self, key: str) -> CachedReply | None:
        """The reply stored under `key`, if any."""
        return self.get_many([key]).get(key)

    def get_many(self, keys: list[str]) -> dict[str, CachedReply]:
        """The stored replies of those keys that are in the cache."""
        found: dict[str, CachedReply] = {}
        with self._lock:
            for start in range(0, len(keys), 500):  # stay under sqlite's variable limit
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    "SELECT key, reply, prompt_tokens, completion_tokens, served_model"
                    f" FROM replies WHERE key IN ({marks})",
                    chunk,
                ).fetchall()
                for key, reply, prompt_tokens, completion_tokens, served in rows:
                    found[key] = CachedReply(reply, prompt_tokens, completion_tokens, served)
        return found

    def put(
        self,
        key: str,
        *,
        model: str,
        prompt: str,
        reply: str,
        prompt_tokens: int,
        completion_tokens: int,
        served_model: str | None = None,
    ) -> None:
        """Store a reply (and the model that served it, when known) and commit at once."""
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO replies (key, model, prompt, reply, prompt_tokens,"
                " completion_tokens, created, served_model) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    model,
                    prompt,
                    reply,
                    prompt_tokens,
                    completion_tokens,
                    time.time(),
                    served_model,
                ),
            )

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"JudgeCache({self.path!r})"
