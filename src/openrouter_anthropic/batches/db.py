"""The two databases the batch store runs on, behind one small async interface.

SQL is written once, with PostgreSQL's `$1` placeholders (SQLite reads them as `?1`), and
runs inside `write(fn)` (one transaction, retried on a PostgreSQL deadlock) or `read(fn)`.

SQLite: one connection per role (writer, reader), each owned by a thread of its own that
runs a whole transaction per hop, so a lock wait or a slow page of results never blocks the
event loop. WAL mode lets the reader run beside the writer; `BEGIN IMMEDIATE` takes the
write lock up front, which serialises writers (several processes on one file included,
through busy_timeout) without deadlocks.
`synchronous=NORMAL`: a commit survives the process being killed (the WAL write is done
when COMMIT returns); only an OS crash or power loss can take back the last commits.

PostgreSQL: an asyncpg pool; row locks with `FOR UPDATE SKIP LOCKED` let workers on many
machines claim requests without waiting for each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import sqlite3
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
Row = Sequence[Any]
_PLACEHOLDER = re.compile(r"\$(\d+)")
_PG_RETRIES = 5


class Tx(Protocol):
    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; the number of rows it changed."""
        ...

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...


class Database(Protocol):
    dialect: str  # "sqlite" or "postgresql"

    async def write(self, fn: Callable[[Tx], Awaitable[T]]) -> T: ...

    async def read(self, fn: Callable[[Tx], Awaitable[T]]) -> T: ...

    async def close(self) -> None: ...


async def open_database(url: str, pool_size: int) -> Database:
    if url.startswith("sqlite:"):
        return await SqliteDatabase.open(Path(url[len("sqlite:///"):]))
    return await PostgresDatabase.open(url, pool_size)


# ---------------------------------------------------------------- SQLite


@lru_cache(maxsize=256)
def _sqlite_sql(sql: str) -> str:
    return _PLACEHOLDER.sub(r"?\1", sql)


class _Thread:
    """One sqlite3 connection and the single thread that uses it; calls run in order."""

    def __init__(self, path: Path, name: str) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._path = path
        self._conn: sqlite3.Connection | None = None

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, fn)

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._conn = conn
        return fn(self._conn)

    async def close(self) -> None:
        def shut(conn: sqlite3.Connection) -> None:
            conn.close()

        if self._conn is not None:
            await self.call(shut)
            self._conn = None
        self._executor.shutdown(wait=False)


class _SqliteTx:
    """Statements run at once on the calling (connection's) thread: its coroutines never
    suspend, so a whole transaction body runs to its end within one thread hop."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return self._conn.execute(_sqlite_sql(sql), args).fetchall()

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def execute(self, sql: str, *args: Any) -> int:
        return self._conn.execute(_sqlite_sql(sql), args).rowcount

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(_sqlite_sql(sql), rows)


def _run_inline(coro: Coroutine[Any, Any, T]) -> T:
    """Drive a coroutine that never suspends (a transaction body over _SqliteTx)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        result: T = stop.value
        return result
    coro.close()
    raise RuntimeError("a batch store transaction waited on something besides the database")


def _transaction(fn: Callable[[Tx], Awaitable[T]]) -> Callable[[sqlite3.Connection], T]:
    def run(conn: sqlite3.Connection) -> T:
        # IMMEDIATE: take the write lock up front (waiting up to busy_timeout for another
        # process), so two writers never deadlock on a lock upgrade.
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = _run_inline(_as_coroutine(fn(_SqliteTx(conn))))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    return run


def _reading(fn: Callable[[Tx], Awaitable[T]]) -> Callable[[sqlite3.Connection], T]:
    def run(conn: sqlite3.Connection) -> T:
        return _run_inline(_as_coroutine(fn(_SqliteTx(conn))))

    return run


def _as_coroutine(awaitable: Awaitable[T]) -> Coroutine[Any, Any, T]:
    assert isinstance(awaitable, Coroutine), "transaction bodies are async functions"
    return awaitable


class SqliteDatabase:
    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        # One thread per connection runs whole transactions, in the order they were asked
        # for: one hop each, and no lock needed on this side.
        self._writer = _Thread(path, "batches-sqlite-w")
        self._reader = _Thread(path, "batches-sqlite-r")

    @classmethod
    async def open(cls, path: Path) -> SqliteDatabase:
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(path)

    async def write(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        return await self._writer.call(_transaction(fn))

    async def read(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        return await self._reader.call(_reading(fn))

    async def close(self) -> None:
        await self._writer.close()
        await self._reader.close()


# ---------------------------------------------------------------- PostgreSQL


def _pg_dsn(url: str) -> str:
    """asyncpg takes postgresql:// URLs; accept SQLAlchemy's postgresql+asyncpg:// too."""
    return re.sub(r"^postgres(?:ql)?(?:\+asyncpg)?://", "postgresql://", url)


class _PgTx:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        rows: list[Row] = await self._conn.fetch(sql, *args)
        return rows

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        row: Row | None = await self._conn.fetchrow(sql, *args)
        return row

    async def execute(self, sql: str, *args: Any) -> int:
        status: str = await self._conn.execute(sql, *args)
        tail = status.rsplit(" ", 1)[-1]  # "UPDATE 3", "INSERT 0 1", "DELETE 0"
        return int(tail) if tail.isdigit() else 0

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, rows)


class PostgresDatabase:
    dialect = "postgresql"

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str, pool_size: int) -> PostgresDatabase:
        import asyncpg  # only for PostgreSQL stores

        pool = await asyncpg.create_pool(_pg_dsn(url), min_size=1, max_size=pool_size,
                                         command_timeout=60)
        return cls(pool)

    async def write(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        import asyncpg

        for attempt in range(_PG_RETRIES):
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    return await fn(_PgTx(conn))
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
                # Rare (two transactions locking the same rows in a different order);
                # PostgreSQL aborted one of them: run it again.
                if attempt == _PG_RETRIES - 1:
                    raise
                await asyncio.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
        raise AssertionError("unreachable")

    async def read(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        async with self._pool.acquire() as conn:
            return await fn(_PgTx(conn))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._pool.close(), 10)
