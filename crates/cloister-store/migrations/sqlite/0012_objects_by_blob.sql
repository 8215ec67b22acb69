-- the orphaned-blob sweep asks which blobs objects still point at
CREATE INDEX objects_by_blob ON objects (blob_key);
