-- attestation verifier
CREATE TABLE challenges (
   name TEXT PRIMARY KEY,
   project_id TEXT NOT NULL REFERENCES projects(id),
   nonce BLOB NOT NULL,
   create_time INTEGER NOT NULL,
   expire_time INTEGER NOT NULL,
   used INTEGER NOT NULL
) STRICT;
CREATE TABLE reference_values (
   measurement TEXT PRIMARY KEY,
   swversion TEXT NOT NULL,
   dbgstat TEXT NOT NULL,
   support_attributes TEXT NOT NULL,
   description TEXT NOT NULL,
   create_time TEXT NOT NULL
) STRICT;
