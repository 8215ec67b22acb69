-- Cloud Storage
CREATE TABLE buckets (
   name TEXT PRIMARY KEY,
   project_id TEXT NOT NULL REFERENCES projects(id),
   location TEXT NOT NULL,
   storage_class TEXT NOT NULL,
   create_time TEXT NOT NULL
) STRICT;
CREATE INDEX buckets_project ON buckets(project_id);
CREATE TABLE objects (
   bucket TEXT NOT NULL REFERENCES buckets(name),
   name TEXT NOT NULL,
   generation INTEGER NOT NULL,
   metageneration INTEGER NOT NULL,
   size INTEGER NOT NULL,
   md5 BLOB NOT NULL,
   crc32c INTEGER NOT NULL,
   content_type TEXT NOT NULL,
   create_time TEXT NOT NULL,
   update_time TEXT NOT NULL,
   blob_key TEXT NOT NULL,
   PRIMARY KEY (bucket, name)
) STRICT;
