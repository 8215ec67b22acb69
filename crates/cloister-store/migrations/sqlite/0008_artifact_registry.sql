-- Artifact Registry (see `registry.rs`)
CREATE TABLE registry_repositories (
   name TEXT PRIMARY KEY,
   project_id TEXT NOT NULL REFERENCES projects(id),
   location TEXT NOT NULL,
   repository_id TEXT NOT NULL,
   format TEXT NOT NULL,
   description TEXT NOT NULL,
   create_time TEXT NOT NULL,
   UNIQUE (project_id, repository_id)
) STRICT;
CREATE TABLE registry_blobs (
   digest TEXT PRIMARY KEY,
   size INTEGER NOT NULL,
   blob_key TEXT NOT NULL
) STRICT;
CREATE TABLE registry_blob_links (
   repository TEXT NOT NULL REFERENCES registry_repositories(name),
   image TEXT NOT NULL,
   digest TEXT NOT NULL REFERENCES registry_blobs(digest),
   PRIMARY KEY (repository, image, digest)
) STRICT;
CREATE INDEX registry_blob_links_digest ON registry_blob_links(digest);
CREATE TABLE registry_manifests (
   repository TEXT NOT NULL REFERENCES registry_repositories(name),
   image TEXT NOT NULL,
   digest TEXT NOT NULL,
   media_type TEXT NOT NULL,
   content BLOB NOT NULL,
   subject TEXT,
   artifact_type TEXT,
   create_time TEXT NOT NULL,
   PRIMARY KEY (repository, image, digest)
) STRICT;
CREATE INDEX registry_manifests_subject ON registry_manifests(repository, image, subject);
CREATE TABLE registry_tags (
   repository TEXT NOT NULL,
   image TEXT NOT NULL,
   tag TEXT NOT NULL,
   digest TEXT NOT NULL,
   PRIMARY KEY (repository, image, tag),
   FOREIGN KEY (repository, image, digest) REFERENCES registry_manifests(repository, image, digest)
) STRICT;
CREATE TABLE registry_uploads (
   upload_id TEXT PRIMARY KEY,
   repository TEXT NOT NULL REFERENCES registry_repositories(name),
   image TEXT NOT NULL,
   received INTEGER NOT NULL,
   chunks INTEGER NOT NULL,
   single_chunk_sha256 TEXT,
   create_time INTEGER NOT NULL
) STRICT;
