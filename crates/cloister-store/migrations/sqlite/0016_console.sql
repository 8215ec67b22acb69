-- The console's sign-in: one-time codes the CLI obtains, and browser sessions. Only SHA-256
-- hashes of the secrets are kept; times are Unix seconds.
CREATE TABLE console_login_codes (
    code_hash TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    expire_time INTEGER NOT NULL
);
CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    expire_time INTEGER NOT NULL
);
