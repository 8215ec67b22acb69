-- workload identity federation
CREATE TABLE service_accounts (
   email TEXT PRIMARY KEY,
   project_id TEXT NOT NULL REFERENCES projects(id),
   unique_id TEXT NOT NULL UNIQUE,
   display_name TEXT NOT NULL,
   description TEXT NOT NULL,
   disabled INTEGER NOT NULL,
   create_time TEXT NOT NULL
) STRICT;
CREATE INDEX service_accounts_project ON service_accounts(project_id);
CREATE TABLE federation (
   name TEXT PRIMARY KEY,
   parent TEXT NOT NULL,
   project_id TEXT NOT NULL REFERENCES projects(id),
   resource TEXT NOT NULL,
   etag TEXT NOT NULL
) STRICT;
CREATE INDEX federation_parent ON federation(parent);
