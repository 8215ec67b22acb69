-- Compute Engine instances
CREATE TABLE instances (
   resource_name TEXT PRIMARY KEY,
   project_id TEXT NOT NULL REFERENCES projects(id),
   zone TEXT NOT NULL,
   name TEXT NOT NULL,
   id INTEGER NOT NULL UNIQUE,
   service_account TEXT NOT NULL,
   metadata TEXT NOT NULL,
   confidential_type TEXT NOT NULL,
   status TEXT NOT NULL,
   create_time TEXT NOT NULL
) STRICT;
