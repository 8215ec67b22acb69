-- replicas' leases on the instances they run (a JSON array of instance ids)
CREATE TABLE replica_leases (
   replica TEXT PRIMARY KEY,
   expires_at INTEGER NOT NULL,
   instance_ids TEXT NOT NULL
) STRICT;
