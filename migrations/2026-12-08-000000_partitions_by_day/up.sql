-- The tables that grow with every event (events, deliveries, delivery_attempts) are partitioned
-- by the UTC day of their ids. Every id is a v7 uuid that starts with its event's arrival in
-- milliseconds (a delivery's carries its event's, an attempt's delivery id its delivery's), so
-- one range of ids is one day of events, with their deliveries and attempts in the same day's
-- partitions of the other two tables. A day is then removed by dropping its partitions, which
-- gives its space back at once, without a vacuum.
--
-- What a partitioned table cannot have, and what stands for it:
-- - a unique index without the partition key: `events (source_id, idempotency_key)` and
--   `deliveries (event_id, subscription_id)` are unique within each day's partition (made by
--   `ensure_partitions`), and ingest looks for an idempotency key over the last days under a
--   lock on the key (`idempotency_key_seen`);
-- - a row outside every partition: each table has a DEFAULT partition, which takes any row no
--   day's partition covers (a clock far off, or days not yet made), and `ensure_partitions`
--   moves the rows of a day out of it when it makes that day.
--
-- An existing database keeps its rows where they are: each table becomes the partition of
-- every id before the migration (`<table>_before`; its indexes are kept, and its bound is
-- checked with one scan), and the rest of today and the days after get their own partitions.
-- An empty one is replaced by days. Replicas of the previous version cannot store events into
-- the partitioned tables (their statement relies on the unique key that is gone), so their
-- ingest answers 5xx, and providers retry, until they are replaced.

-- The first id of a moment: the first v7 uuid of its millisecond (rounded up), as
-- `EventId::first_at` makes it.
CREATE FUNCTION first_id_at(at timestamptz) RETURNS uuid LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT (substr(hex, 1, 8) || '-' || substr(hex, 9, 4) || '-7000-8000-000000000000')::uuid
    FROM (SELECT lpad(to_hex(ceil(extract(epoch FROM at) * 1000)::bigint), 12, '0') AS hex) ms
$$;

-- The tables as they are, to become partitions or go.
ALTER TABLE events RENAME TO events_before;
ALTER TABLE deliveries RENAME TO deliveries_before;
ALTER TABLE delivery_attempts RENAME TO delivery_attempts_before;
ALTER INDEX events_pkey RENAME TO events_before_pkey;
ALTER INDEX events_payload RENAME TO events_before_payload;
ALTER INDEX events_source_id RENAME TO events_before_source_id;
ALTER TABLE events_before RENAME CONSTRAINT events_source_id_fkey TO events_before_source_id_fkey;
ALTER INDEX events_source_id_idempotency_key_key RENAME TO events_before_idempotency_key;
ALTER INDEX deliveries_pkey RENAME TO deliveries_before_pkey;
ALTER INDEX deliveries_due RENAME TO deliveries_before_due;
ALTER INDEX deliveries_failed RENAME TO deliveries_before_failed;
ALTER INDEX deliveries_subscription_id RENAME TO deliveries_before_subscription_id;
ALTER INDEX deliveries_uncounted RENAME TO deliveries_before_uncounted;
ALTER INDEX deliveries_undelivered RENAME TO deliveries_before_undelivered;
ALTER INDEX deliveries_event_id_subscription_id_key RENAME TO deliveries_before_event_subscription;
ALTER TABLE deliveries_before
    RENAME CONSTRAINT deliveries_subscription_id_fkey TO deliveries_before_subscription_id_fkey;
ALTER INDEX delivery_attempts_pkey RENAME TO delivery_attempts_before_pkey;
ALTER INDEX delivery_attempts_subscription_started
    RENAME TO delivery_attempts_before_subscription_started;
DROP TRIGGER deliveries_take_their_attempts ON deliveries_before;

CREATE TABLE events (
    id uuid NOT NULL,
    source_id uuid NOT NULL
        CONSTRAINT events_source_id_fkey REFERENCES sources (id) ON DELETE CASCADE,
    body bytea NOT NULL,
    payload jsonb,
    content_type text,
    headers jsonb NOT NULL DEFAULT '{}',
    idempotency_key text,
    received_at timestamptz NOT NULL DEFAULT now(),
    path text NOT NULL DEFAULT '',
    query text NOT NULL DEFAULT '',
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);
CREATE INDEX events_source_id ON events (source_id, id DESC);
CREATE INDEX events_payload ON events USING gin (payload jsonb_path_ops);

CREATE TABLE deliveries (
    id uuid NOT NULL,
    event_id uuid NOT NULL,
    subscription_id uuid NOT NULL
        CONSTRAINT deliveries_subscription_id_fkey REFERENCES subscriptions (id) ON DELETE CASCADE,
    status text NOT NULL DEFAULT 'pending'
        CONSTRAINT deliveries_status_check
        CHECK (status IN ('pending', 'retrying', 'completed', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    retry_count integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    completed_at timestamptz,
    last_error text,
    leased_until timestamptz,
    republishes integer NOT NULL DEFAULT 0,
    waiting text,
    counted_attempts integer NOT NULL DEFAULT 0,
    due_since timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at)
    WHERE status IN ('pending', 'retrying');
CREATE INDEX deliveries_failed ON deliveries (id DESC) WHERE status = 'failed';
CREATE INDEX deliveries_subscription_id ON deliveries (subscription_id, id DESC);
CREATE INDEX deliveries_uncounted ON deliveries (subscription_id)
    WHERE status = 'failed' AND attempts > counted_attempts;
CREATE INDEX deliveries_undelivered ON deliveries (subscription_id, due_since)
    WHERE status IN ('pending', 'retrying');

CREATE TABLE delivery_attempts (
    delivery_id uuid NOT NULL,
    attempt integer NOT NULL,
    started_at timestamptz NOT NULL,
    duration_ms integer NOT NULL,
    status_code integer,
    error text,
    response_body text,
    subscription_id uuid,
    PRIMARY KEY (delivery_id, attempt)
) PARTITION BY RANGE (delivery_id);
CREATE INDEX delivery_attempts_subscription_started
    ON delivery_attempts (subscription_id, started_at);

CREATE TRIGGER deliveries_take_their_attempts AFTER DELETE ON deliveries
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT
    EXECUTE FUNCTION delete_attempts_of_deleted_deliveries();

CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE TABLE deliveries_default PARTITION OF deliveries DEFAULT;
CREATE TABLE delivery_attempts_default PARTITION OF delivery_attempts DEFAULT;
CREATE INDEX events_default_idempotency_key ON events_default (source_id, idempotency_key);

-- Takes the locks of `statements` (`LOCK ... NOWAIT`) as soon as they are all free, trying
-- every 50 ms for up to `seconds`; answers whether it did. Attaching, detaching and dropping a
-- partition need locks that every statement on the table conflicts with, and dropping or
-- detaching one also locks the tables its foreign keys point to (sources, subscriptions).
-- Waited for, such a lock would hold up every statement that comes after it until those
-- running end (the longest of them, a scan, for seconds), and waiting for one while holding
-- another can close a cycle with a statement; asked for without waiting, all at once, they
-- hold up nothing until they are all had, at some moment between statements. The locks are
-- kept to the end of the transaction.
CREATE FUNCTION lock_when_free(statements text[], seconds double precision) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + seconds * interval '1 second';
    statement text;
BEGIN
    LOOP
        BEGIN
            FOREACH statement IN ARRAY statements LOOP
                EXECUTE statement;
            END LOOP;
            RETURN true;
        EXCEPTION WHEN lock_not_available THEN
            IF clock_timestamp() >= deadline THEN
                RETURN false;
            END IF;
        END;
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;

-- Makes the partitions named `<table>_<suffix>` of the three tables for the ids from `low` to
-- `high` (`low` NULL: from the first), moving the rows the DEFAULT partitions hold for them in,
-- with the unique indexes each partition keeps for itself. Those that exist are left as they
-- are. A range another partition covers is not made: what was made and moved is undone; nor
-- one whose DEFAULT partition stays busy for 10 s (the next upkeep makes it).
CREATE FUNCTION make_partitions(suffix text, low uuid, high uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    parent text;
    key text;
    part text;
BEGIN
    FOREACH parent IN ARRAY ARRAY['events', 'deliveries', 'delivery_attempts'] LOOP
        part := parent || '_' || suffix;
        -- Made already, or being compacted.
        CONTINUE WHEN to_regclass(part) IS NOT NULL OR to_regclass(part || '_expiring') IS NOT NULL;
        key := CASE parent WHEN 'delivery_attempts' THEN 'delivery_id' ELSE 'id' END;
        -- Attaching locks the DEFAULT partition, which every statement on the table locks.
        CONTINUE WHEN NOT lock_when_free(ARRAY[
            format('LOCK TABLE %I IN ACCESS EXCLUSIVE MODE NOWAIT', parent || '_default'),
            'LOCK TABLE sources, subscriptions IN ACCESS EXCLUSIVE MODE NOWAIT'], 10);
        BEGIN
            EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                part, parent);
            EXECUTE format('WITH moved AS (DELETE FROM %I WHERE ($1 IS NULL OR %I >= $1) '
                'AND %I < $2 RETURNING *) INSERT INTO %I SELECT * FROM moved',
                parent || '_default', key, key, part) USING low, high;
            IF parent = 'events' THEN
                EXECUTE format('CREATE UNIQUE INDEX %I ON %I (source_id, idempotency_key)',
                    part || '_idempotency_key', part);
            ELSIF parent = 'deliveries' THEN
                EXECUTE format('CREATE UNIQUE INDEX %I ON %I (event_id, subscription_id)',
                    part || '_event_subscription', part);
            END IF;
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%L)',
                parent, part, coalesce(quote_literal(low), 'MINVALUE'), high);
        EXCEPTION WHEN invalid_object_definition THEN
            NULL;
        END;
    END LOOP;
END $$;

-- Makes the partitions of the UTC days from `first_day` to `last_day` that do not exist yet
-- (see `make_partitions`); a day the partition of the ids before the partitioning reaches into
-- starts where that one ends. Replicas call it concurrently: it takes its turn behind a lock.
--
-- It also makes again, empty, any of those partitions and the DEFAULT ones that was analysed
-- while empty (by a database-wide ANALYZE, say). The planner believes such a table holds
-- nothing, and a plan made for any values (the ingest and delivery statements', see
-- `Plans::Generic`) then walks a whole index of it as cheaply as it looks up keys; kept while
-- the day fills, that plan would walk all of the day's rows for every batch. A table never
-- analysed is taken for ten pages, and the keys win.
CREATE FUNCTION ensure_partitions(first_day date, last_day date) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    day date;
    parent text;
    part text;
    covered uuid;
    low uuid;
    high uuid;
    filled boolean;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('ensure_partitions'));
    -- The locks are taken when free (`lock_when_free`); any other wait gives up after 500 ms,
    -- before PostgreSQL looks for deadlocks (after `deadlock_timeout`, 1 s), so that if the
    -- wait closes a cycle with a statement's, it is this one that yields.
    PERFORM set_config('lock_timeout', '500ms', true);
    FOREACH parent IN ARRAY ARRAY['events', 'deliveries', 'delivery_attempts'] LOOP
        part := parent || '_default';
        -- Missing, or never analysed: nothing to make again.
        CONTINUE WHEN coalesce(
            (SELECT reltuples < 0 FROM pg_class WHERE oid = to_regclass(part)), true);
        EXECUTE format('SELECT EXISTS (SELECT FROM %I)', part) INTO filled;
        CONTINUE WHEN filled OR NOT lock_when_free(ARRAY[
            format('LOCK TABLE ONLY %I IN ACCESS EXCLUSIVE MODE NOWAIT', parent),
            'LOCK TABLE sources, subscriptions IN ACCESS EXCLUSIVE MODE NOWAIT'], 10);
        EXECUTE format('DROP TABLE %I', part);
        EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT', part, parent);
        IF parent = 'events' THEN
            CREATE INDEX events_default_idempotency_key
                ON events_default (source_id, idempotency_key);
        END IF;
    END LOOP;
    -- Where the partition of the ids before the partitioning ends, if there is one.
    SELECT substring(pg_get_expr(relpartbound, oid) FROM $re$TO \('([^']+)'\)$re$)::uuid
        INTO covered FROM pg_class WHERE oid = to_regclass('events_before');
    FOR day IN SELECT generate_series(first_day, last_day, interval '1 day')::date LOOP
        FOREACH parent IN ARRAY ARRAY['events', 'deliveries', 'delivery_attempts'] LOOP
            part := parent || '_' || to_char(day, 'YYYYMMDD');
            CONTINUE WHEN coalesce(
                (SELECT reltuples < 0 FROM pg_class WHERE oid = to_regclass(part)), true);
            EXECUTE format('SELECT EXISTS (SELECT FROM %I)', part) INTO filled;
            CONTINUE WHEN filled OR NOT lock_when_free(ARRAY[
                format('LOCK TABLE ONLY %I IN ACCESS EXCLUSIVE MODE NOWAIT', parent),
                'LOCK TABLE sources, subscriptions IN ACCESS EXCLUSIVE MODE NOWAIT'], 10);
            EXECUTE format('DROP TABLE %I', part);
        END LOOP;
        low := greatest(first_id_at(day::timestamp AT TIME ZONE 'UTC'), covered);
        high := first_id_at((day + 1)::timestamp AT TIME ZONE 'UTC');
        CONTINUE WHEN low >= high;
        PERFORM make_partitions(to_char(day, 'YYYYMMDD'), low, high);
    END LOOP;
END $$;

-- Retention removes a day by dropping its partitions, keeping what must stay (deliveries still
-- to make, failed ones within their longer retention, ones replayed recently): it detaches the
-- day's three partitions (renamed `<table>_<suffix>_expiring`), copies what stays into new
-- tables, and attaches those for the same range, or nothing when nothing stays. Each range's
-- last compaction, and the bounds of one under way, are kept here.
CREATE TABLE partition_compactions (
    -- `20261203`, or `before` for the ids before the partitioning.
    suffix text PRIMARY KEY,
    -- NULL: from the first id.
    low uuid,
    high uuid NOT NULL,
    started_at timestamptz NOT NULL,
    compacted_at timestamptz
);

-- Detaches a range's three partitions for its compaction, together: in between, a day's
-- events would read without their deliveries. It takes the three tables' locks at a moment when
-- they are all free (`lock_when_free`), for milliseconds; answers false when they were not for
-- 30 s (a long statement or transaction on one of them), to be tried again. Already detached:
-- nothing to do.
CREATE FUNCTION detach_for_compaction(suffix text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    parent text;
    part text;
    bound text;
BEGIN
    IF to_regclass('events_' || suffix) IS NULL THEN
        RETURN true;
    END IF;
    PERFORM set_config('lock_timeout', '500ms', true);
    IF NOT lock_when_free(ARRAY['LOCK TABLE ONLY events, ONLY deliveries, '
        'ONLY delivery_attempts IN ACCESS EXCLUSIVE MODE NOWAIT', 'LOCK TABLE sources, subscriptions IN ACCESS EXCLUSIVE MODE NOWAIT'], 30) THEN
        RETURN false;
    END IF;
    SELECT pg_get_expr(relpartbound, oid) INTO bound FROM pg_class
        WHERE oid = ('events_' || suffix)::regclass;
    INSERT INTO partition_compactions (suffix, low, high, started_at)
        VALUES (suffix, substring(bound FROM $re$FROM \('([^']+)'\)$re$)::uuid,
            substring(bound FROM $re$TO \('([^']+)'\)$re$)::uuid, now())
        ON CONFLICT ON CONSTRAINT partition_compactions_pkey DO UPDATE
        SET low = excluded.low, high = excluded.high, started_at = excluded.started_at;
    FOREACH parent IN ARRAY ARRAY['events', 'deliveries', 'delivery_attempts'] LOOP
        part := parent || '_' || suffix;
        EXECUTE format('ALTER TABLE %I DETACH PARTITION %I', parent, part);
        EXECUTE format('ALTER TABLE %I RENAME TO %I', part, part || '_expiring');
    END LOOP;
    RETURN true;
END $$;

-- Ends a range's compaction once its three partitions are detached: keeps what stays of them
-- (deliveries but those completed before `completed_before` or failed before `failed_before`,
-- by their events' arrival and their last attempt; the events of those kept, and the unrouted
-- ones arrived since `completed_before`; the attempts of those kept) and what the DEFAULT
-- partitions took for the range meanwhile, and attaches that; the rest is left, renamed
-- `<table>_<suffix>_expired`, for `drop_expired`. Answers the events kept, or NULL when there
-- is nothing to do or another replica is doing it.
CREATE FUNCTION keep_survivors(suffix text, completed_before timestamptz,
    failed_before timestamptz) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    low uuid;
    high uuid;
    parent text;
    key text;
    columns text;
    kept bigint := 0;
    events_kept bigint;
    counted bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('keep_survivors')) THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('lock_timeout', '500ms', true);
    IF to_regclass('events_' || suffix || '_expiring') IS NULL
        OR to_regclass('deliveries_' || suffix || '_expiring') IS NULL
        OR to_regclass('delivery_attempts_' || suffix || '_expiring') IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT c.low, c.high INTO low, high FROM partition_compactions c
        WHERE c.suffix = keep_survivors.suffix;
    FOREACH parent IN ARRAY ARRAY['events', 'deliveries', 'delivery_attempts'] LOOP
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
            parent || '_' || suffix || '_kept', parent);
    END LOOP;

    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO columns
        FROM pg_attribute WHERE attrelid = 'deliveries'::regclass AND attnum > 0
        AND NOT attisdropped;
    EXECUTE format('INSERT INTO %I (%s) SELECT %s FROM %I WHERE NOT ('
        '(status = ''completed'' AND id < first_id_at($1) '
        'AND coalesce(completed_at, ''-infinity'') < $1) OR '
        '(status = ''failed'' AND id < first_id_at($2) '
        'AND coalesce(completed_at, ''-infinity'') < $2))',
        'deliveries_' || suffix || '_kept', columns, columns,
        'deliveries_' || suffix || '_expiring') USING completed_before, failed_before;

    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO columns
        FROM pg_attribute WHERE attrelid = 'events'::regclass AND attnum > 0
        AND NOT attisdropped;
    EXECUTE format('INSERT INTO %I (%s) SELECT %s FROM %I '
        'WHERE id IN (SELECT event_id FROM %I)',
        'events_' || suffix || '_kept', columns, columns, 'events_' || suffix || '_expiring',
        'deliveries_' || suffix || '_kept');
    IF high > first_id_at(completed_before) THEN
        EXECUTE format('INSERT INTO %I (%s) SELECT %s FROM %I AS e '
            'WHERE id >= first_id_at($1) AND NOT EXISTS '
            '(SELECT FROM %I AS d WHERE d.event_id = e.id)',
            'events_' || suffix || '_kept', columns, columns,
            'events_' || suffix || '_expiring', 'deliveries_' || suffix || '_expiring')
            USING completed_before;
    END IF;

    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO columns
        FROM pg_attribute WHERE attrelid = 'delivery_attempts'::regclass AND attnum > 0
        AND NOT attisdropped;
    EXECUTE format('INSERT INTO %I (%s) SELECT %s FROM %I '
        'WHERE delivery_id IN (SELECT id FROM %I)',
        'delivery_attempts_' || suffix || '_kept', columns, columns,
        'delivery_attempts_' || suffix || '_expiring', 'deliveries_' || suffix || '_kept');

    -- What stays takes the range's names; what goes is dropped afterwards (`drop_expired`),
    -- outside this transaction's locks.
    FOREACH parent IN ARRAY ARRAY['events', 'deliveries', 'delivery_attempts'] LOOP
        EXECUTE format('ALTER TABLE %I RENAME TO %I', parent || '_' || suffix || '_expiring',
            parent || '_' || suffix || '_expired');
        EXECUTE format('ALTER TABLE %I RENAME TO %I', parent || '_' || suffix || '_kept',
            parent || '_' || suffix);
    END LOOP;
    EXECUTE format('CREATE UNIQUE INDEX ON %I (source_id, idempotency_key)', 'events_' || suffix);
    EXECUTE format('CREATE UNIQUE INDEX ON %I (event_id, subscription_id)',
        'deliveries_' || suffix);

    -- Attaching locks the DEFAULT partitions, which every statement on the tables locks: from
    -- a moment they are free, what is left takes milliseconds. While the range is detached its
    -- events do not read, so this tries for a minute before giving up (to the next run).
    IF NOT lock_when_free(ARRAY['LOCK TABLE events_default, deliveries_default, '
        'delivery_attempts_default IN ACCESS EXCLUSIVE MODE NOWAIT', 'LOCK TABLE sources, subscriptions IN ACCESS EXCLUSIVE MODE NOWAIT'], 60) THEN
        RAISE EXCEPTION 'the DEFAULT partitions stayed busy for a minute'
            USING ERRCODE = 'lock_not_available';
    END IF;
    FOREACH parent IN ARRAY ARRAY['events', 'deliveries', 'delivery_attempts'] LOOP
        key := CASE parent WHEN 'delivery_attempts' THEN 'delivery_id' ELSE 'id' END;
        -- What arrived for the range while it was detached.
        EXECUTE format('WITH moved AS (DELETE FROM %I WHERE ($1 IS NULL OR %I >= $1) '
            'AND %I < $2 RETURNING *) INSERT INTO %I SELECT * FROM moved',
            parent || '_default', key, key, parent || '_' || suffix)
            USING low, high;
        EXECUTE format('SELECT count(*) FROM %I', parent || '_' || suffix) INTO counted;
        kept := kept + counted;
        IF parent = 'events' THEN
            events_kept := counted;
        END IF;
    END LOOP;

    IF kept = 0 THEN
        FOREACH parent IN ARRAY ARRAY['events', 'deliveries', 'delivery_attempts'] LOOP
            EXECUTE format('DROP TABLE %I', parent || '_' || suffix);
        END LOOP;
        DELETE FROM partition_compactions c WHERE c.suffix = keep_survivors.suffix;
        RETURN 0;
    END IF;
    FOREACH parent IN ARRAY ARRAY['events', 'deliveries', 'delivery_attempts'] LOOP
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%L)',
            parent, parent || '_' || suffix, coalesce(quote_literal(low), 'MINVALUE'), high);
    END LOOP;
    UPDATE partition_compactions c SET compacted_at = now()
        WHERE c.suffix = keep_survivors.suffix;
    RETURN events_kept;
END $$;

-- Drops what compactions left to go: the detached partitions of the days compacted, which no
-- statement reads. Dropping their foreign keys locks sources and subscriptions, for
-- milliseconds, from a moment they are free; not free for 10 s: left to the next run.
CREATE FUNCTION drop_expired() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    expired text;
BEGIN
    PERFORM set_config('lock_timeout', '500ms', true);
    IF NOT EXISTS (SELECT FROM pg_class WHERE relkind = 'r'
            AND relname ~ '^(events|deliveries|delivery_attempts)_[0-9a-z]+_expired$')
        OR NOT lock_when_free(ARRAY['LOCK TABLE sources, subscriptions IN ACCESS EXCLUSIVE MODE NOWAIT'], 10) THEN
        RETURN;
    END IF;
    FOR expired IN SELECT relname FROM pg_class WHERE relkind = 'r'
        AND relname ~ '^(events|deliveries|delivery_attempts)_[0-9a-z]+_expired$' LOOP
        EXECUTE format('DROP TABLE %I', expired);
    END LOOP;
END $$;

-- Whether a source stored an event under `key` since `since` (an id: the lookup reads only the
-- partitions from then on). The caller is storing one under that key: the lock on the key,
-- held to the end of its transaction, makes a concurrent arrival of the same key wait for it,
-- and the lookup, a statement of its own, then sees that arrival's event once committed.
CREATE FUNCTION idempotency_key_seen(source uuid, key text, since uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(source::text || key, 0));
    RETURN EXISTS (SELECT FROM events
        WHERE source_id = source AND idempotency_key = key AND id >= since);
END $$;

DO $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    bound uuid := first_id_at(now());
BEGIN
    IF EXISTS (SELECT FROM events_before) THEN
        -- Rows past now (ids not made by the relay) wait in the DEFAULT partitions.
        INSERT INTO events_default SELECT id, source_id, body, payload, content_type, headers,
            idempotency_key, received_at, path, query FROM events_before WHERE id >= bound;
        DELETE FROM events_before WHERE id >= bound;
        INSERT INTO deliveries_default SELECT id, event_id, subscription_id, status, attempts,
            retry_count, next_attempt_at, completed_at, last_error, leased_until, republishes,
            waiting, counted_attempts, due_since FROM deliveries_before WHERE id >= bound;
        DELETE FROM deliveries_before WHERE id >= bound;
        INSERT INTO delivery_attempts_default SELECT delivery_id, attempt, started_at,
            duration_ms, status_code, error, response_body, subscription_id
            FROM delivery_attempts_before WHERE delivery_id >= bound;
        DELETE FROM delivery_attempts_before WHERE delivery_id >= bound;
        EXECUTE format('ALTER TABLE events ATTACH PARTITION events_before '
            'FOR VALUES FROM (MINVALUE) TO (%L)', bound);
        EXECUTE format('ALTER TABLE deliveries ATTACH PARTITION deliveries_before '
            'FOR VALUES FROM (MINVALUE) TO (%L)', bound);
        EXECUTE format('ALTER TABLE delivery_attempts ATTACH PARTITION delivery_attempts_before '
            'FOR VALUES FROM (MINVALUE) TO (%L)', bound);
    ELSE
        DROP TABLE delivery_attempts_before, deliveries_before, events_before;
    END IF;
    -- Today's partitions (from now, after the partition of the ids before) and the next days'.
    PERFORM ensure_partitions(today, today + 3);
END $$;
