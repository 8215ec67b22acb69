-- who opened each resumable upload (re-authorized at every chunk and at the commit), and a bucket's sessions found for cancelling when it is deleted
ALTER TABLE upload_sessions ADD COLUMN creator TEXT;
CREATE INDEX upload_sessions_by_bucket ON upload_sessions (bucket);
