-- Cloud KMS
CREATE TABLE kms_key_rings (
   name TEXT PRIMARY KEY,
   project_id TEXT NOT NULL REFERENCES projects(id),
   create_time TEXT NOT NULL
) STRICT;
CREATE TABLE kms_crypto_keys (
   name TEXT PRIMARY KEY,
   key_ring TEXT NOT NULL REFERENCES kms_key_rings(name),
   purpose TEXT NOT NULL,
   primary_version INTEGER NOT NULL,
   create_time TEXT NOT NULL
) STRICT;
CREATE TABLE kms_key_versions (
   key TEXT NOT NULL REFERENCES kms_crypto_keys(name),
   version INTEGER NOT NULL,
   state TEXT NOT NULL,
   wrapped_material BLOB NOT NULL,
   create_time TEXT NOT NULL,
   PRIMARY KEY (key, version)
) STRICT;
