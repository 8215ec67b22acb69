-- A lease's instance ids as a JSON array, as SQLite keeps them, so one statement reads both.
ALTER TABLE replica_leases ALTER COLUMN instance_ids TYPE TEXT USING array_to_json(instance_ids)::TEXT;
