DROP TRIGGER sources_routing ON sources;
DROP FUNCTION bump_own_routing_version();
DROP TRIGGER subscriptions_routing ON subscriptions;
DROP FUNCTION bump_routing_version();
ALTER TABLE sources DROP COLUMN routing_version;
ALTER TABLE events DROP COLUMN path, DROP COLUMN query;
ALTER TABLE subscriptions DROP COLUMN filter, DROP COLUMN forward_path;
