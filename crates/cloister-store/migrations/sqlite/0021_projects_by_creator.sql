-- The projects a user created, counted without a scan in a create's transaction (its user's
-- project quota; a scan there would make every two creates conflict under PostgreSQL's
-- serializable isolation, whoever their creators).
CREATE INDEX projects_by_creator ON projects (creator);
