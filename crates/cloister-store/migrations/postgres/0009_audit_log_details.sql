-- What a decision weighed (a token exchange's clauses, as JSON), so `cloister audit describe` can show why without the request that caused it.
ALTER TABLE audit_log ADD COLUMN details TEXT;
