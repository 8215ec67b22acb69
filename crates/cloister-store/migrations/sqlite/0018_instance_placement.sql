-- Where an instance runs: WAITING for a replica to claim it, PLACED on `replica`, or RELEASED
-- (no replica runs it any more). Instances from before placement were started by the replica
-- that received them, which marks them TERMINATED when it restarts: none is waiting.
ALTER TABLE instances ADD COLUMN placement TEXT NOT NULL DEFAULT 'RELEASED';
ALTER TABLE instances ADD COLUMN replica TEXT;
-- Why an instance waits (Compute Engine's statusMessage).
ALTER TABLE instances ADD COLUMN status_message TEXT;
CREATE INDEX instances_by_placement ON instances (placement, create_time);
-- The confidential types a replica can run (a JSON array), so a create that no live replica
-- could ever run is refused rather than left waiting.
ALTER TABLE replica_leases ADD COLUMN offers TEXT NOT NULL DEFAULT '[]';
