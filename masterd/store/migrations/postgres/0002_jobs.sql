-- 0002: jobs (SubmitJob) and each node's record in a job (issue 31).
-- The same schema as sqlite/0002_jobs.sql in PostgreSQL's words; applied in one
-- transaction with its row in schema_migrations (masterd.store.migrations).

CREATE TABLE jobs (
    id         TEXT PRIMARY KEY,
    request_id TEXT UNIQUE,               -- SubmitJob's idempotency key; nulls are all distinct
    request    TEXT NOT NULL,             -- JSON: the SubmitJob as parsed (compared on a resend)
    fn_name    TEXT NOT NULL,
    fn_args    TEXT NOT NULL,             -- JSON object
    timeout    DOUBLE PRECISION NOT NULL, -- per node, from its start
    abort_after DOUBLE PRECISION,
    "window"   INTEGER,
    canary     INTEGER NOT NULL,
    max_failures INTEGER,
    state      TEXT NOT NULL,             -- queued, running, finished, aborted
    owner      TEXT,                      -- the masterd instance that runs it
    abort      TEXT,                      -- null, 'nodes' (start no more) or 'calls'
    submitted  DOUBLE PRECISION NOT NULL,
    ended      DOUBLE PRECISION
);
CREATE INDEX jobs_submitted ON jobs (submitted);
CREATE INDEX jobs_state ON jobs (state);

CREATE TABLE job_nodes (
    job_id     TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,          -- the node's place in the job (the roll-out's order)
    node       TEXT NOT NULL,
    address    TEXT NOT NULL,
    port       INTEGER NOT NULL,
    request_id TEXT,                      -- committed before its StartFunction is sent
    asked      DOUBLE PRECISION,
    fnc_id     TEXT,                      -- once the node named its call
    seq        INTEGER,                   -- the result's position in the job, once it ended
    outcome    TEXT,                      -- ok, failed, timed_out, unreachable, skipped
    result     TEXT,                      -- JSON
    error      TEXT,                      -- JSON
    PRIMARY KEY (job_id, node)
);
CREATE UNIQUE INDEX job_nodes_position ON job_nodes (job_id, position);
CREATE UNIQUE INDEX job_nodes_seq ON job_nodes (job_id, seq);
