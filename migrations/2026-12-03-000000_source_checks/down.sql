DROP TABLE rejected_requests;
DROP TRIGGER sources_routing ON sources;
CREATE TRIGGER sources_routing BEFORE UPDATE OF provider ON sources
    FOR EACH ROW WHEN (OLD.provider IS DISTINCT FROM NEW.provider)
    EXECUTE FUNCTION bump_own_routing_version();
ALTER TABLE sources DROP COLUMN last_handshake_answered_at;
ALTER TABLE sources DROP COLUMN last_handshake_outcome;
ALTER TABLE sources DROP COLUMN last_handshake_at;
ALTER TABLE sources DROP COLUMN response;
