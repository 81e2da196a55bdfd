-- Partition upkeep and compaction take no lock they do not need, and hold the ones every
-- statement waits for only for catalog work:
-- - Attaching or detaching a partition locks the tables its foreign keys point to (sources,
--   subscriptions) in SHARE ROW EXCLUSIVE mode, which ingest's reads and key checks do not
--   conflict with; only dropping a detached table, whose keys then stand on their own, needs
--   them ACCESS EXCLUSIVE. Dropping an attached partition needs neither.
-- - What a compaction leaves to go is emptied first (`empty_expired`), which locks nothing
--   else, and dropped once empty.
-- - A compaction that keeps nothing attaches nothing, so it takes no lock on the DEFAULT
--   partitions: whatever they took for the range meanwhile stays there, removed row by row.
-- - What it keeps is checked against the range before the DEFAULT partitions are locked, so
--   that attaching it need not scan it.

CREATE OR REPLACE FUNCTION make_partitions(suffix text, low uuid, high uuid) RETURNS void
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
            'LOCK TABLE sources, subscriptions IN SHARE ROW EXCLUSIVE MODE NOWAIT'], 10);
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

CREATE OR REPLACE FUNCTION ensure_partitions(first_day date, last_day date) RETURNS void
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
            'LOCK TABLE sources, subscriptions IN SHARE ROW EXCLUSIVE MODE NOWAIT'], 10);
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
                format('LOCK TABLE ONLY %I IN ACCESS EXCLUSIVE MODE NOWAIT', parent)], 10);
            EXECUTE format('DROP TABLE %I', part);
        END LOOP;
        low := greatest(first_id_at(day::timestamp AT TIME ZONE 'UTC'), covered);
        high := first_id_at((day + 1)::timestamp AT TIME ZONE 'UTC');
        CONTINUE WHEN low >= high;
        PERFORM make_partitions(to_char(day, 'YYYYMMDD'), low, high);
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION detach_for_compaction(suffix text) RETURNS boolean
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
        'ONLY delivery_attempts IN ACCESS EXCLUSIVE MODE NOWAIT',
        'LOCK TABLE sources, subscriptions IN SHARE ROW EXCLUSIVE MODE NOWAIT'], 30) THEN
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

-- As before, with what is kept attached under the fewest locks: nothing attached when nothing
-- is kept and the DEFAULT partitions hold nothing of the range, and, otherwise, each kept
-- table checked against the range first, so that attaching it does not scan it under the
-- DEFAULT partitions' lock. Events and attempts are read only for deliveries kept.
CREATE OR REPLACE FUNCTION keep_survivors(suffix text, completed_before timestamptz,
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
    filled boolean;
    pending boolean := false;
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
    GET DIAGNOSTICS counted = ROW_COUNT;
    -- The events and attempts of the deliveries kept are looked up by key, as few as they
    -- usually are, once the planner knows how few.
    EXECUTE format('ANALYZE %I', 'deliveries_' || suffix || '_kept');

    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO columns
        FROM pg_attribute WHERE attrelid = 'events'::regclass AND attnum > 0
        AND NOT attisdropped;
    IF counted > 0 THEN
        EXECUTE format('INSERT INTO %I (%s) SELECT %s FROM %I '
            'WHERE id IN (SELECT event_id FROM %I)',
            'events_' || suffix || '_kept', columns, columns,
            'events_' || suffix || '_expiring', 'deliveries_' || suffix || '_kept');
    END IF;
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
    IF counted > 0 THEN
        EXECUTE format('INSERT INTO %I (%s) SELECT %s FROM %I '
            'WHERE delivery_id IN (SELECT id FROM %I)',
            'delivery_attempts_' || suffix || '_kept', columns, columns,
            'delivery_attempts_' || suffix || '_expiring', 'deliveries_' || suffix || '_kept');
    END IF;

    -- What stays takes the range's names; what goes is emptied and dropped afterwards
    -- (`empty_expired`, `drop_expired`), outside this transaction's locks.
    FOREACH parent IN ARRAY ARRAY['events', 'deliveries', 'delivery_attempts'] LOOP
        key := CASE parent WHEN 'delivery_attempts' THEN 'delivery_id' ELSE 'id' END;
        EXECUTE format('ALTER TABLE %I RENAME TO %I', parent || '_' || suffix || '_expiring',
            parent || '_' || suffix || '_expired');
        EXECUTE format('ALTER TABLE %I RENAME TO %I', parent || '_' || suffix || '_kept',
            parent || '_' || suffix);
        EXECUTE format('SELECT EXISTS (SELECT FROM %I) OR EXISTS (SELECT FROM %I '
            'WHERE ($1 IS NULL OR %I >= $1) AND %I < $2)',
            parent || '_' || suffix, parent || '_default', key, key)
            INTO filled USING low, high;
        pending := pending OR filled;
    END LOOP;

    -- Nothing stays: the range goes without a partition, and rows arriving for it later (a
    -- replay's) go to the DEFAULT partitions, whose rows retention removes one by one.
    IF NOT pending THEN
        FOREACH parent IN ARRAY ARRAY['events', 'deliveries', 'delivery_attempts'] LOOP
            EXECUTE format('DROP TABLE %I', parent || '_' || suffix);
        END LOOP;
        DELETE FROM partition_compactions c WHERE c.suffix = keep_survivors.suffix;
        RETURN 0;
    END IF;

    EXECUTE format('CREATE UNIQUE INDEX ON %I (source_id, idempotency_key)', 'events_' || suffix);
    EXECUTE format('CREATE UNIQUE INDEX ON %I (event_id, subscription_id)',
        'deliveries_' || suffix);
    FOREACH parent IN ARRAY ARRAY['events', 'deliveries', 'delivery_attempts'] LOOP
        key := CASE parent WHEN 'delivery_attempts' THEN 'delivery_id' ELSE 'id' END;
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (%I IS NOT NULL%s AND %I < %L)',
            parent || '_' || suffix, parent || '_' || suffix || '_range', key,
            CASE WHEN low IS NULL THEN '' ELSE format(' AND %I >= %L', key, low) END,
            key, high);
    END LOOP;

    -- Attaching locks the DEFAULT partitions, which every statement on the tables locks: from
    -- a moment they are free, what is left takes milliseconds. While the range is detached its
    -- events do not read, so this tries for a minute before giving up (to the next run).
    IF NOT lock_when_free(ARRAY['LOCK TABLE events_default, deliveries_default, '
        'delivery_attempts_default IN ACCESS EXCLUSIVE MODE NOWAIT',
        'LOCK TABLE sources, subscriptions IN SHARE ROW EXCLUSIVE MODE NOWAIT'], 60) THEN
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
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%L)',
            parent, parent || '_' || suffix, coalesce(quote_literal(low), 'MINVALUE'), high);
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I',
            parent || '_' || suffix, parent || '_' || suffix || '_range');
        EXECUTE format('SELECT count(*) FROM %I', parent || '_' || suffix) INTO counted;
        kept := kept + counted;
        IF parent = 'events' THEN
            events_kept := counted;
        END IF;
    END LOOP;
    UPDATE partition_compactions c SET compacted_at = now()
        WHERE c.suffix = keep_survivors.suffix;
    RETURN events_kept;
END $$;

-- Empties what compactions left to go, the detached partitions of the days compacted, which
-- no statement reads: their space comes back here, under no lock but their own.
CREATE FUNCTION empty_expired() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    expired text;
BEGIN
    PERFORM set_config('lock_timeout', '500ms', true);
    FOR expired IN SELECT relname FROM pg_class WHERE relkind = 'r'
        AND relname ~ '^(events|deliveries|delivery_attempts)_[0-9a-z]+_expired$' LOOP
        -- Another replica's drop_expired may have dropped it meanwhile.
        BEGIN
            EXECUTE format('TRUNCATE %I', expired);
        EXCEPTION WHEN undefined_table THEN
            NULL;
        END;
    END LOOP;
END $$;

-- Drops what compactions left to go, once emptied (`empty_expired`). Dropping their foreign
-- keys locks sources and subscriptions, for milliseconds, from a moment they are free; not
-- free for 10 s: left to the next run.
CREATE OR REPLACE FUNCTION drop_expired() RETURNS void
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
