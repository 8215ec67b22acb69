-- the project that owns each audited resource, so a project's owners see decisions on resources named outside `projects/P/…` (buckets are `projects/_/buckets/B`).
ALTER TABLE audit_log ADD COLUMN project TEXT;
CREATE INDEX audit_log_project ON audit_log(project);
