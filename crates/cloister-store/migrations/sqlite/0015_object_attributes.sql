-- objects' writable metadata besides the content type (custom metadata, Cache-Control, Content-Disposition/-Encoding/-Language) as one JSON object and a composite's component count; resumable sessions keep the same metadata and their metageneration preconditions for the object they commit
ALTER TABLE objects ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}';
ALTER TABLE objects ADD COLUMN component_count INTEGER;
ALTER TABLE upload_sessions ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}';
ALTER TABLE upload_sessions ADD COLUMN if_metageneration_match INTEGER;
ALTER TABLE upload_sessions ADD COLUMN if_metageneration_not_match INTEGER;
