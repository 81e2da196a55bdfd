-- Filters and paths. A subscription may filter which of its source's events it receives, and
-- may forward the path and query each event arrived with (after the token) to its endpoint.
--
-- Ingest evaluates filters in the process, against the source's subscriptions as it last read
-- them, and stores the event and its deliveries only if the source's routing_version is still
-- the one it read: every change that alters where a source's events go bumps it, here in the
-- database, so no code path that changes a subscription can forget to.

ALTER TABLE subscriptions
    ADD COLUMN filter jsonb,
    ADD COLUMN forward_path boolean NOT NULL DEFAULT false;

-- As received: the path after the token (with its leading '/', or '') and the raw query.
ALTER TABLE events
    ADD COLUMN path text NOT NULL DEFAULT '',
    ADD COLUMN query text NOT NULL DEFAULT '';

ALTER TABLE sources ADD COLUMN routing_version bigint NOT NULL DEFAULT 0;

CREATE FUNCTION bump_routing_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE sources SET routing_version = routing_version + 1 WHERE id = OLD.source_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND (TG_OP = 'INSERT' OR NEW.source_id <> OLD.source_id) THEN
        UPDATE sources SET routing_version = routing_version + 1 WHERE id = NEW.source_id;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER subscriptions_routing AFTER INSERT OR DELETE OR UPDATE OF filter, source_id
    ON subscriptions FOR EACH ROW EXECUTE FUNCTION bump_routing_version();

CREATE FUNCTION bump_own_routing_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.routing_version := OLD.routing_version + 1;
    RETURN NEW;
END $$;

CREATE TRIGGER sources_routing BEFORE UPDATE OF provider ON sources
    FOR EACH ROW WHEN (OLD.provider IS DISTINCT FROM NEW.provider)
    EXECUTE FUNCTION bump_own_routing_version();
