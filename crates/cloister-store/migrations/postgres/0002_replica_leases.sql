-- SQLite's migration 11, replicas' leases on the instances they run.
CREATE TABLE replica_leases (
   replica TEXT PRIMARY KEY,
   expires_at BIGINT NOT NULL,
   instance_ids BIGINT[] NOT NULL
);
