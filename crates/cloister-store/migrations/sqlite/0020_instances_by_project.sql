-- A project's instances, found without a scan: its listing, and the count its instance quota
-- makes in a create's transaction (a scan there would make every two creates conflict under
-- PostgreSQL's serializable isolation, whatever their projects).
CREATE INDEX instances_by_project ON instances (project_id, zone, name);
