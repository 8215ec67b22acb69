-- foundation
CREATE TABLE users (
   email TEXT PRIMARY KEY,
   display_name TEXT NOT NULL,
   admin INTEGER NOT NULL,
   create_time TEXT NOT NULL
) STRICT;
CREATE TABLE credentials (
   id TEXT PRIMARY KEY,
   user_email TEXT NOT NULL REFERENCES users(email),
   secret_sha256 BLOB NOT NULL,
   create_time TEXT NOT NULL
) STRICT;
CREATE TABLE projects (
   id TEXT PRIMARY KEY,
   number INTEGER NOT NULL UNIQUE,
   display_name TEXT NOT NULL,
   create_time TEXT NOT NULL,
   creator TEXT NOT NULL
) STRICT;
CREATE TABLE iam_policies (
   resource TEXT PRIMARY KEY,
   parent TEXT,
   policy TEXT NOT NULL,
   etag TEXT NOT NULL
) STRICT;
CREATE TABLE audit_log (
   id INTEGER PRIMARY KEY AUTOINCREMENT,
   time TEXT NOT NULL,
   principal TEXT NOT NULL,
   permission TEXT NOT NULL,
   resource TEXT NOT NULL,
   decision TEXT NOT NULL CHECK (decision IN ('allow', 'deny')),
   reason TEXT NOT NULL
) STRICT;
CREATE INDEX audit_log_resource ON audit_log(resource);
CREATE INDEX audit_log_principal ON audit_log(principal);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
   BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
   BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
