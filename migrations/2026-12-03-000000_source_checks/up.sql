-- What a source answers an accepted request with, when not the default 202 and event id; when
-- it last answered a provider's handshake; and the requests it refused lately.

-- {"status": 200|201|202|204, "body": text or null, "content_type": text or null}
ALTER TABLE sources ADD COLUMN response jsonb;
ALTER TABLE sources ADD COLUMN last_handshake_at timestamptz;
-- 'answered', or the reason it was refused ('bad_signature', 'failed_handshake', ...).
ALTER TABLE sources ADD COLUMN last_handshake_outcome text;
-- When one was last answered: a provider may follow a good handshake with a bad one on purpose
-- (Discord checks that a bad signature is refused).
ALTER TABLE sources ADD COLUMN last_handshake_answered_at timestamptz;

-- Ingest keeps the response with the source's route, so changing it must refresh the route.
DROP TRIGGER sources_routing ON sources;
CREATE TRIGGER sources_routing BEFORE UPDATE OF provider, response ON sources
    FOR EACH ROW WHEN (OLD.provider IS DISTINCT FROM NEW.provider
                       OR OLD.response IS DISTINCT FROM NEW.response)
    EXECUTE FUNCTION bump_own_routing_version();

-- The last requests each source refused, newest first: at most 100 a source (ingest deletes
-- older ones as it adds), credentials masked, no more than a 1 KiB sample of the body.
CREATE TABLE rejected_requests (
    id uuid PRIMARY KEY,
    source_id uuid NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    received_at timestamptz NOT NULL DEFAULT now(),
    reason text NOT NULL,
    -- Refused while answering a handshake rather than an event.
    handshake boolean NOT NULL,
    method text NOT NULL,
    path text NOT NULL,
    headers jsonb NOT NULL,
    body_sample bytea NOT NULL,
    body_bytes integer NOT NULL
);
CREATE INDEX rejected_requests_source ON rejected_requests (source_id, received_at DESC, id DESC);
