-- 0001: nodes, events (with each node spool's acknowledged position), masterd instances.
-- Applied in one transaction with its row in schema_migrations (masterd.store.migrations).

CREATE TABLE nodes (
    uuid       TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    address    TEXT NOT NULL,
    port       INTEGER NOT NULL,
    boot_id    TEXT NOT NULL,
    instance   TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    version    TEXT NOT NULL,
    labels     TEXT NOT NULL,      -- a JSON array of strings
    functions  TEXT NOT NULL,      -- a JSON array of strings
    registered REAL NOT NULL,      -- Unix time of the first Register
    last_seen  REAL NOT NULL       -- Unix time, flushed in batches from memory
);

-- AUTOINCREMENT: an id is never reused, even after the newest rows are deleted
CREATE TABLE events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    node_uuid TEXT,                -- null for masterd's own events about no node
    node      TEXT,                -- the node's name when stored
    spool     TEXT,                -- null for masterd's own events
    seq       INTEGER,             -- null for masterd's own events
    type      TEXT NOT NULL,
    at        REAL NOT NULL,
    data      TEXT NOT NULL,       -- JSON
    fnc_id    TEXT,
    stored    REAL NOT NULL
);
-- each (uuid, spool, seq) once; nulls (masterd's own events) are all distinct
CREATE UNIQUE INDEX events_node_seq ON events (node_uuid, spool, seq);

CREATE TABLE spools (
    node_uuid TEXT NOT NULL,
    spool     TEXT NOT NULL,
    acked     INTEGER NOT NULL,    -- the highest seq stored with none missing below it
    PRIMARY KEY (node_uuid, spool)
);

CREATE TABLE instances (
    id        TEXT PRIMARY KEY,    -- made at each start of a masterd: a job's owner
    advertise TEXT NOT NULL,       -- HOST:PORT nodes should use
    pid       INTEGER NOT NULL,
    started   REAL NOT NULL,
    renewed   REAL NOT NULL
);
