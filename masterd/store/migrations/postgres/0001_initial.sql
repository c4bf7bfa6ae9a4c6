-- 0001: nodes, events (with each node spool's acknowledged position), masterd instances.
-- The same schema as sqlite/0001_initial.sql in PostgreSQL's words; applied in one
-- transaction with its row in schema_migrations (masterd.store.migrations).

CREATE TABLE nodes (
    uuid       TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    address    TEXT NOT NULL,
    port       INTEGER NOT NULL,
    boot_id    TEXT NOT NULL,
    instance   TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    version    TEXT NOT NULL,
    labels     TEXT NOT NULL,               -- a JSON array of strings
    functions  TEXT NOT NULL,               -- a JSON array of strings
    registered DOUBLE PRECISION NOT NULL,   -- Unix time of the first Register
    last_seen  DOUBLE PRECISION NOT NULL    -- Unix time; masters flush it with GREATEST
);

-- an identity never reuses a value; inserts take an advisory lock (masterd.store.postgres)
-- so that ids become visible in order, which WaitForEvents' positions rely on
CREATE TABLE events (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    node_uuid TEXT,                         -- null for masterd's own events about no node
    node      TEXT,                         -- the node's name when stored
    spool     TEXT,                         -- null for masterd's own events
    seq       BIGINT,                       -- null for masterd's own events
    type      TEXT NOT NULL,
    at        DOUBLE PRECISION NOT NULL,
    data      TEXT NOT NULL,                -- JSON, as sent (key order kept)
    fnc_id    TEXT,
    stored    DOUBLE PRECISION NOT NULL
);
-- each (uuid, spool, seq) once, whichever master stores it; nulls are all distinct
CREATE UNIQUE INDEX events_node_seq ON events (node_uuid, spool, seq);

CREATE TABLE spools (
    node_uuid TEXT NOT NULL,
    spool     TEXT NOT NULL,
    acked     BIGINT NOT NULL,              -- the highest seq stored with none missing below it
    PRIMARY KEY (node_uuid, spool)
);

CREATE TABLE instances (
    id        TEXT PRIMARY KEY,             -- made at each start of a masterd: a job's owner
    advertise TEXT NOT NULL,                -- HOST:PORT nodes should use
    pid       INTEGER NOT NULL,
    started   DOUBLE PRECISION NOT NULL,
    renewed   DOUBLE PRECISION NOT NULL     -- the database's clock (live masters)
);
CREATE INDEX instances_renewed ON instances (renewed);
