-- resumable uploads
CREATE TABLE upload_sessions (
   upload_id TEXT PRIMARY KEY,
   bucket TEXT NOT NULL REFERENCES buckets(name),
   name TEXT NOT NULL,
   content_type TEXT NOT NULL,
   if_generation_match INTEGER,
   if_generation_not_match INTEGER,
   received INTEGER NOT NULL,
   create_time INTEGER NOT NULL
) STRICT;
