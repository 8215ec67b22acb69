-- SQLite's migration 12, for the orphaned-blob sweep.
CREATE INDEX objects_by_blob ON objects (blob_key);
