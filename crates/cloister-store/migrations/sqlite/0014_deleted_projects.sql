-- deleted projects: their ids and numbers are never given to another project (as in Google), so no one inherits the grants that name them or their audit history
CREATE TABLE deleted_projects (
   id TEXT PRIMARY KEY,
   number INTEGER NOT NULL UNIQUE,
   delete_time TEXT NOT NULL,
   deleter TEXT NOT NULL
) STRICT;
