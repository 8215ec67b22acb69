-- SQLite's migration 14, objects' attributes and component counts, sessions' attributes and metageneration preconditions.
ALTER TABLE objects ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}';
ALTER TABLE objects ADD COLUMN component_count BIGINT;
ALTER TABLE upload_sessions ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}';
ALTER TABLE upload_sessions ADD COLUMN if_metageneration_match BIGINT;
ALTER TABLE upload_sessions ADD COLUMN if_metageneration_not_match BIGINT;
