"""The batch store's tables, for SQLite and PostgreSQL (one template, two type sets).

batches   one row per batch, with its request counts kept in step with its requests in the
          same transaction (a GET never counts rows; the counts always add up).
requests  one row per request: params as sent, state, attempts, lease, result (JSON bytes).
attempts  one row per upstream call, written before the call (crash recovery re-sends
          only attempts that have no outcome) and closed with its outcome.

Times are epoch seconds. Ids sort by creation time (ULIDs), bytewise: PostgreSQL compares
them with the "C" collation whatever the database's locale.
"""

from __future__ import annotations

from .db import Database, Tx

SCHEMA_VERSION = "1"

_TYPES = {
    "sqlite": {"id": "TEXT", "int": "INTEGER", "real": "REAL", "blob": "BLOB"},
    "postgresql": {"id": 'TEXT COLLATE "C"', "int": "BIGINT", "real": "DOUBLE PRECISION",
                   "blob": "BYTEA"},
}

_DDL = """
CREATE TABLE IF NOT EXISTS batch_meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
  id {id} PRIMARY KEY,
  owner TEXT NOT NULL,
  status TEXT NOT NULL,
  request_count {int} NOT NULL,
  processing {int} NOT NULL,
  succeeded {int} NOT NULL DEFAULT 0,
  errored {int} NOT NULL DEFAULT 0,
  canceled {int} NOT NULL DEFAULT 0,
  expired {int} NOT NULL DEFAULT 0,
  created_at {real} NOT NULL,
  expires_at {real} NOT NULL,
  ended_at {real},
  cancel_initiated_at {real},
  archived_at {real},
  flow_run_id TEXT
);
CREATE INDEX IF NOT EXISTS batches_by_owner ON batches (owner, id);
CREATE INDEX IF NOT EXISTS batches_open ON batches (id) WHERE status <> 'ended';
CREATE TABLE IF NOT EXISTS batch_requests (
  batch_id {id} NOT NULL,
  idx {int} NOT NULL,
  custom_id TEXT NOT NULL,
  params {blob} NOT NULL,
  state TEXT NOT NULL DEFAULT 'queued',
  attempts {int} NOT NULL DEFAULT 0,
  not_before {real} NOT NULL DEFAULT 0,
  lease_owner TEXT,
  lease_until {real},
  result {blob},
  PRIMARY KEY (batch_id, idx)
);
CREATE INDEX IF NOT EXISTS batch_requests_open ON batch_requests (batch_id, idx)
  WHERE state IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS batch_requests_leased ON batch_requests (lease_owner)
  WHERE state = 'running';
CREATE TABLE IF NOT EXISTS batch_attempts (
  batch_id {id} NOT NULL,
  idx {int} NOT NULL,
  n {int} NOT NULL,
  worker TEXT NOT NULL,
  started_at {real} NOT NULL,
  ended_at {real},
  outcome TEXT,
  PRIMARY KEY (batch_id, idx, n)
);
"""

# Any fixed number: serialises schema creation between processes starting together.
_PG_SCHEMA_LOCK = 0x6F72615F62617463


async def create_schema(db: Database) -> None:
    statements = [s.strip() for s in _DDL.format(**_TYPES[db.dialect]).split(";")]

    async def run(tx: Tx) -> None:
        if db.dialect == "postgresql":
            await tx.execute("SELECT pg_advisory_xact_lock($1)", _PG_SCHEMA_LOCK)
        for statement in statements:
            if statement:
                await tx.execute(statement)
        await tx.execute("INSERT INTO batch_meta (key, value) VALUES ('schema_version', $1) "
                         "ON CONFLICT (key) DO NOTHING", SCHEMA_VERSION)

    await db.write(run)
