-- The attested workload a decision is about (a verified attestation token's `sub`, an instance's URL), so an instance's trust chain finds its token issuance and exchanges in any project's log.
ALTER TABLE audit_log ADD COLUMN subject TEXT;
CREATE INDEX audit_log_subject ON audit_log(subject);
