-- the schema of SQLite's migrations 1–10, in PostgreSQL's types.
CREATE TABLE users (
   email TEXT COLLATE "C" PRIMARY KEY,
   display_name TEXT NOT NULL,
   admin BOOLEAN NOT NULL,
   create_time TEXT NOT NULL
);
CREATE TABLE credentials (
   id TEXT PRIMARY KEY,
   user_email TEXT NOT NULL REFERENCES users(email),
   secret_sha256 BYTEA NOT NULL,
   create_time TEXT NOT NULL
);
CREATE TABLE projects (
   id TEXT COLLATE "C" PRIMARY KEY,
   number BIGINT NOT NULL UNIQUE,
   display_name TEXT NOT NULL,
   create_time TEXT NOT NULL,
   creator TEXT NOT NULL
);
CREATE TABLE iam_policies (
   resource TEXT PRIMARY KEY,
   parent TEXT,
   policy TEXT NOT NULL,
   etag TEXT NOT NULL
);
CREATE TABLE audit_log (
   id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
   time TEXT COLLATE "C" NOT NULL,
   principal TEXT NOT NULL,
   permission TEXT NOT NULL,
   resource TEXT COLLATE "C" NOT NULL,
   decision TEXT NOT NULL CHECK (decision IN ('allow', 'deny')),
   reason TEXT NOT NULL,
   project TEXT
);
CREATE INDEX audit_log_resource ON audit_log(resource);
CREATE INDEX audit_log_principal ON audit_log(principal);
CREATE INDEX audit_log_project ON audit_log(project);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
   BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
   FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
   FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
CREATE TABLE service_accounts (
   email TEXT COLLATE "C" PRIMARY KEY,
   project_id TEXT NOT NULL REFERENCES projects(id),
   unique_id TEXT NOT NULL UNIQUE,
   display_name TEXT NOT NULL,
   description TEXT NOT NULL,
   disabled BOOLEAN NOT NULL,
   create_time TEXT NOT NULL
);
CREATE INDEX service_accounts_project ON service_accounts(project_id);
CREATE TABLE federation (
   name TEXT COLLATE "C" PRIMARY KEY,
   parent TEXT NOT NULL,
   project_id TEXT NOT NULL REFERENCES projects(id),
   resource TEXT NOT NULL,
   etag TEXT NOT NULL
);
CREATE INDEX federation_parent ON federation(parent);
CREATE TABLE challenges (
   name TEXT PRIMARY KEY,
   project_id TEXT NOT NULL REFERENCES projects(id),
   nonce BYTEA NOT NULL,
   create_time BIGINT NOT NULL,
   expire_time BIGINT NOT NULL,
   used BOOLEAN NOT NULL
);
CREATE TABLE reference_values (
   measurement TEXT COLLATE "C" PRIMARY KEY,
   swversion TEXT NOT NULL,
   dbgstat TEXT NOT NULL,
   support_attributes TEXT NOT NULL,
   description TEXT NOT NULL,
   create_time TEXT NOT NULL
);
CREATE TABLE buckets (
   name TEXT COLLATE "C" PRIMARY KEY,
   project_id TEXT NOT NULL REFERENCES projects(id),
   location TEXT NOT NULL,
   storage_class TEXT NOT NULL,
   create_time TEXT NOT NULL
);
CREATE INDEX buckets_project ON buckets(project_id);
CREATE TABLE objects (
   bucket TEXT COLLATE "C" NOT NULL REFERENCES buckets(name),
   name TEXT COLLATE "C" NOT NULL,
   generation BIGINT NOT NULL,
   metageneration BIGINT NOT NULL,
   size BIGINT NOT NULL,
   md5 BYTEA NOT NULL,
   crc32c BIGINT NOT NULL,
   content_type TEXT NOT NULL,
   create_time TEXT NOT NULL,
   update_time TEXT NOT NULL,
   blob_key TEXT NOT NULL,
   PRIMARY KEY (bucket, name)
);
CREATE TABLE upload_sessions (
   upload_id TEXT PRIMARY KEY,
   bucket TEXT NOT NULL REFERENCES buckets(name),
   name TEXT NOT NULL,
   content_type TEXT NOT NULL,
   if_generation_match BIGINT,
   if_generation_not_match BIGINT,
   received BIGINT NOT NULL,
   create_time BIGINT NOT NULL
);
CREATE TABLE kms_key_rings (
   name TEXT COLLATE "C" PRIMARY KEY,
   project_id TEXT NOT NULL REFERENCES projects(id),
   create_time TEXT NOT NULL
);
CREATE TABLE kms_crypto_keys (
   name TEXT COLLATE "C" PRIMARY KEY,
   key_ring TEXT NOT NULL REFERENCES kms_key_rings(name),
   purpose TEXT NOT NULL,
   primary_version BIGINT NOT NULL,
   create_time TEXT NOT NULL
);
CREATE TABLE kms_key_versions (
   key TEXT NOT NULL REFERENCES kms_crypto_keys(name),
   version BIGINT NOT NULL,
   state TEXT NOT NULL,
   wrapped_material BYTEA NOT NULL,
   create_time TEXT NOT NULL,
   PRIMARY KEY (key, version)
);
CREATE TABLE registry_repositories (
   name TEXT PRIMARY KEY,
   project_id TEXT NOT NULL REFERENCES projects(id),
   location TEXT NOT NULL,
   repository_id TEXT COLLATE "C" NOT NULL,
   format TEXT NOT NULL,
   description TEXT NOT NULL,
   create_time TEXT NOT NULL,
   UNIQUE (project_id, repository_id)
);
CREATE TABLE registry_blobs (
   digest TEXT PRIMARY KEY,
   size BIGINT NOT NULL,
   blob_key TEXT NOT NULL
);
CREATE TABLE registry_blob_links (
   repository TEXT NOT NULL REFERENCES registry_repositories(name),
   image TEXT NOT NULL,
   digest TEXT NOT NULL REFERENCES registry_blobs(digest),
   PRIMARY KEY (repository, image, digest)
);
CREATE INDEX registry_blob_links_digest ON registry_blob_links(digest);
CREATE TABLE registry_manifests (
   repository TEXT NOT NULL REFERENCES registry_repositories(name),
   image TEXT COLLATE "C" NOT NULL,
   digest TEXT COLLATE "C" NOT NULL,
   media_type TEXT NOT NULL,
   content BYTEA NOT NULL,
   subject TEXT,
   artifact_type TEXT,
   create_time TEXT COLLATE "C" NOT NULL,
   PRIMARY KEY (repository, image, digest)
);
CREATE INDEX registry_manifests_subject ON registry_manifests(repository, image, subject);
CREATE TABLE registry_tags (
   repository TEXT NOT NULL,
   image TEXT NOT NULL,
   tag TEXT COLLATE "C" NOT NULL,
   digest TEXT NOT NULL,
   PRIMARY KEY (repository, image, tag),
   FOREIGN KEY (repository, image, digest) REFERENCES registry_manifests(repository, image, digest)
);
CREATE TABLE registry_uploads (
   upload_id TEXT PRIMARY KEY,
   repository TEXT NOT NULL REFERENCES registry_repositories(name),
   image TEXT NOT NULL,
   received BIGINT NOT NULL,
   chunks BIGINT NOT NULL,
   single_chunk_sha256 TEXT,
   create_time BIGINT NOT NULL
);
CREATE TABLE instances (
   resource_name TEXT PRIMARY KEY,
   project_id TEXT NOT NULL REFERENCES projects(id),
   zone TEXT NOT NULL,
   name TEXT COLLATE "C" NOT NULL,
   id BIGINT NOT NULL UNIQUE,
   service_account TEXT NOT NULL,
   metadata TEXT NOT NULL,
   confidential_type TEXT NOT NULL,
   status TEXT NOT NULL,
   create_time TEXT NOT NULL
);
CREATE TABLE signing_keys (
   issuer TEXT NOT NULL,
   created BIGINT NOT NULL,
   wrapped BYTEA NOT NULL,
   PRIMARY KEY (issuer, created)
);
CREATE TABLE secrets (
   name TEXT PRIMARY KEY,
   value BYTEA NOT NULL
);
