-- SQLite's migration 13, resumable uploads' creators and sessions by bucket.
ALTER TABLE upload_sessions ADD COLUMN creator TEXT;
CREATE INDEX upload_sessions_by_bucket ON upload_sessions (bucket);
