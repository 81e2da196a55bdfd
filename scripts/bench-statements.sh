#!/usr/bin/env bash
# What PostgreSQL's side of one event costs at moderate load, statement by statement: one pgbench
# client runs each chain of statements an event needs, one event after another, alternated:
#
#   717d3c0  the pre-throughput code's three (insert the event, read it, record the attempt),
#            on its schema;
#   main     this checkout's two (ingest: route, store the event and its delivery; the claim)
#            and its record, on its schema, with the batch pools' settings;
#   floor    the least main's model could do: the event and its delivery inserted with no
#            routing, key check or join, and a bare lease on the delivery row.
#
#   scripts/bench-statements.sh [ROUNDS] [SECONDS]      # defaults: 3 10
#
# It prints each statement's mean latency (pgbench -r, in ms) and, per event, their sum and their
# sum less a `SELECT 1` round trip each (the statements' own work). Records count a tenth each
# for main and the floor: at moderate load a record lingers and takes about ten attempts
# (BENCHMARKS.md). Commits are asynchronous everywhere, so the figures are work, not disk flushes.
# Uses two scratch databases, bench_statements_old and bench_statements_main, made again on each
# run. See BENCHMARKS.md.
set -euo pipefail

rounds=${1:-3}
seconds=${2:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
./scripts/services.sh >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
psql_() { PGOPTIONS=-cclient_min_messages=warning psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -q "$@"; }

for db in bench_statements_old bench_statements_main; do
    psql_ -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
done
git show 717d3c0:migrations/2026-11-28-000000_core_schema/up.sql | psql_ -d bench_statements_old
for migration in migrations/*/up.sql; do
    psql_ -d bench_statements_main -f "$migration" >/dev/null
done

# A uuid v7 for now, as the relay makes them (the partitions are by the time it carries).
new_id=$(cat <<'EOF'
CREATE FUNCTION new_event_id() RETURNS uuid LANGUAGE sql VOLATILE AS $f$
    SELECT (lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
        || '7' || substr(replace(gen_random_uuid()::text, '-', ''), 14))::uuid
$f$;
EOF
)
user="INSERT INTO users (id, email, password_hash)
    VALUES ('00000000-0000-7000-8000-000000000001', 'a@example.com', 'x');"
psql_ -d bench_statements_old -c "$new_id" -c "$user" -c "INSERT INTO subscriptions
    (id, user_id, name, target_url, ingest_token, signing_secret)
    VALUES ('00000000-0000-7000-8000-000000000004', '00000000-0000-7000-8000-000000000001',
    'sub', 'http://127.0.0.1:9/hook', 'tok', 'whsec_x');"
psql_ -d bench_statements_main -c "$new_id" -c "$user" -c "INSERT INTO workspaces (id, name)
    VALUES ('00000000-0000-7000-8000-000000000002', 'w');" -c "INSERT INTO sources
    (id, workspace_id, name, ingest_token) VALUES ('00000000-0000-7000-8000-000000000003',
    '00000000-0000-7000-8000-000000000002', 's', 'tok');" -c "INSERT INTO subscriptions
    (id, workspace_id, name, target_url, signing_secret, source_id)
    VALUES ('00000000-0000-7000-8000-000000000004', '00000000-0000-7000-8000-000000000002',
    'sub', 'http://127.0.0.1:9/hook', 'whsec_x', '00000000-0000-7000-8000-000000000003');"

# Each chain's statements, in files pgbench runs (a statement may take several lines).
# 717d3c0's, as its code wrote them for one event (src/db/models/event.rs there).
cat >"$work/old.sql" <<'EOF'
SELECT new_event_id() AS id \gset
WITH subscription AS (SELECT id, target_url, provider FROM subscriptions WHERE ingest_token = 'tok'),
  inserted AS (INSERT INTO events (id, subscription_id, body, payload, content_type, headers,
      idempotency_key, next_attempt_at)
    SELECT :id::uuid, subscription.id, '{"a":1}'::bytea, '{"a":1}'::jsonb, 'application/json',
      '{}'::jsonb, NULL, now() FROM subscription WHERE subscription.provider IS NULL OR true
    ON CONFLICT (subscription_id, idempotency_key) DO NOTHING RETURNING id)
  SELECT subscription.id, subscription.target_url, subscription.provider,
    (SELECT id FROM inserted) FROM subscription;
SELECT events.status, events.body, events.content_type, subscriptions.target_url,
    subscriptions.is_active, subscriptions.signing_secret, subscriptions.previous_signing_secret,
    subscriptions.previous_secret_expires_at
  FROM events JOIN subscriptions ON subscriptions.id = events.subscription_id
  WHERE events.id = :id::uuid LIMIT 1;
WITH next AS (SELECT 'completed'::text AS status, NULL::text AS error, 5::integer AS threshold),
  updated AS (UPDATE events SET attempts = events.attempts + 1,
      status = CASE WHEN events.status = 'completed' THEN events.status ELSE next.status END,
      completed_at = CASE WHEN next.status = 'completed'
        THEN coalesce(events.completed_at, now()) ELSE events.completed_at END,
      last_error = CASE WHEN events.status = 'completed' OR next.status = 'completed'
        THEN NULL ELSE next.error END,
      retry_count = 0, next_attempt_at = NULL
    FROM next WHERE events.id = :id::uuid
    RETURNING events.id, events.attempts, events.subscription_id),
  breaker AS (UPDATE subscriptions SET
      consecutive_failures = CASE WHEN next.status = 'completed' THEN 0
        ELSE subscriptions.consecutive_failures + 1 END,
      is_active = subscriptions.is_active AND (next.status = 'completed'
        OR subscriptions.consecutive_failures + 1 < next.threshold),
      disabled_reason = CASE WHEN subscriptions.is_active AND next.status <> 'completed'
          AND subscriptions.consecutive_failures + 1 >= next.threshold
        THEN 'circuit breaker opened after ' || (subscriptions.consecutive_failures + 1)
          || ' consecutive failed attempts; last: ' || coalesce(next.error, 'unknown')
        ELSE subscriptions.disabled_reason END
    FROM updated, next WHERE subscriptions.id = updated.subscription_id
      AND (next.status <> 'completed' OR subscriptions.consecutive_failures <> 0))
  INSERT INTO delivery_attempts (event_id, attempt, started_at, duration_ms, status_code, error,
      response_body)
    SELECT updated.id, updated.attempts, now(), 3, 204, next.error, NULL FROM updated, next;
SELECT 1;
EOF

# Main's, as src/db/models/event.rs and delivery.rs write them for one event of one route.
cat >"$work/ingest.sql" <<'EOF'
SELECT new_event_id() AS id, first_id_at(now() - interval '7 days') AS since \gset
WITH arriving AS (SELECT * FROM unnest(ARRAY['tok']::text[], ARRAY[1]::bigint[], ARRAY[:id::uuid],
      ARRAY[now()], ARRAY['{"a":1}'::bytea], ARRAY['{"a":1}'::jsonb],
      ARRAY['application/json']::text[], ARRAY['{}'::jsonb], ARRAY['']::text[], ARRAY['']::text[],
      ARRAY[NULL]::text[])
    AS arriving (token, routing_version, id, received_at, body, payload, content_type, headers,
      path, query, idempotency_key)),
  routes AS (SELECT * FROM unnest(ARRAY[:id::uuid],
      ARRAY['00000000-0000-7000-8000-000000000004'::uuid]) AS routes (event_id, subscription_id)),
  matched AS (SELECT arriving.*, sources.id AS source_id, sources.workspace_id,
      sources.routing_version = arriving.routing_version IS NOT FALSE AS current
    FROM arriving JOIN sources ON sources.ingest_token = arriving.token),
  keyed AS MATERIALIZED (SELECT source_id, idempotency_key,
      idempotency_key_seen(source_id, idempotency_key, :since::uuid) AS seen
    FROM (SELECT DISTINCT source_id, idempotency_key FROM matched
      WHERE current AND idempotency_key IS NOT NULL) AS keys
    ORDER BY source_id, idempotency_key),
  inserted AS (INSERT INTO events (id, received_at, source_id, body, payload, content_type,
      headers, path, query, idempotency_key)
    SELECT id, received_at, source_id, body, payload, content_type, headers, path, query,
      idempotency_key
    FROM (SELECT matched.*, row_number() OVER (PARTITION BY matched.source_id,
        matched.idempotency_key ORDER BY matched.id) AS nth FROM matched WHERE current)
      AS candidates
    LEFT JOIN keyed USING (source_id, idempotency_key)
    WHERE idempotency_key IS NULL OR (nth = 1 AND NOT keyed.seen)
    ORDER BY source_id, idempotency_key, id RETURNING id, source_id),
  routed AS (INSERT INTO deliveries (id, event_id, subscription_id, next_attempt_at)
    SELECT delivery_id(inserted.id), inserted.id, subscriptions.id, now()
    FROM inserted JOIN routes ON routes.event_id = inserted.id
    JOIN subscriptions ON subscriptions.id = routes.subscription_id
      AND subscriptions.source_id = inserted.source_id
    ORDER BY inserted.id, subscriptions.id RETURNING id, event_id, subscription_id)
  SELECT matched.id, matched.source_id, matched.workspace_id, matched.current, inserted.id,
    routed.id AS did, routed.subscription_id, subscriptions.target_url
  FROM matched LEFT JOIN inserted ON inserted.id = matched.id
  LEFT JOIN routed ON routed.event_id = inserted.id
  LEFT JOIN subscriptions ON subscriptions.id = routed.subscription_id \gset
EOF
cat >"$work/claim.sql" <<'EOF'
WITH wanted AS (SELECT * FROM unnest(ARRAY[:did::uuid], ARRAY[0]) AS wanted (id, retry_count))
  UPDATE deliveries SET leased_until = CASE WHEN subscriptions.kind = 'cli' AND NOT false
      THEN deliveries.leased_until ELSE now() + make_interval(secs => (30000 + greatest(0,
        coalesce((subscriptions.policy ->> 'timeout_ms')::bigint, 10000) - 10000)) / 1000.0) END,
    republishes = CASE WHEN subscriptions.kind = 'cli' AND NOT false
      THEN deliveries.republishes ELSE 0 END
  FROM subscriptions, events, wanted
  WHERE subscriptions.id = deliveries.subscription_id AND events.id = deliveries.event_id
    AND deliveries.id = wanted.id AND deliveries.id = ANY(ARRAY[:did::uuid])
    AND deliveries.id BETWEEN :did::uuid AND :did::uuid
    AND events.id = ANY(ARRAY[:id::uuid]) AND events.id BETWEEN :id::uuid AND :id::uuid
    AND deliveries.status NOT IN ('completed', 'failed')
    AND (deliveries.leased_until IS NULL OR deliveries.leased_until < now())
    AND deliveries.retry_count = wanted.retry_count
  RETURNING deliveries.id, wanted.retry_count, subscriptions.workspace_id, events.id, events.body,
    events.content_type, subscriptions.target_url, subscriptions.is_active,
    subscriptions.signing_secret, subscriptions.previous_signing_secret,
    subscriptions.previous_secret_expires_at, events.received_at, subscriptions.forward_path,
    events.path, events.query, subscriptions.policy,
    CASE WHEN deliveries.waiting IS NOT NULL THEN deliveries.next_attempt_at END,
    subscriptions.kind = 'cli';
EOF
cat >"$work/record.sql" <<'EOF'
WITH outcome AS (SELECT * FROM unnest(ARRAY[:did::uuid], ARRAY['completed']::text[],
      ARRAY[NULL]::text[], ARRAY[0]::integer[], ARRAY[NULL]::timestamptz[], ARRAY[now()],
      ARRAY[3]::integer[], ARRAY[204]::integer[], ARRAY[NULL]::text[])
    AS outcome (id, status, error, retry_count, next_attempt_at, started_at, duration_ms,
      status_code, response_body)),
  updated AS (UPDATE deliveries SET attempts = deliveries.attempts + 1,
      status = CASE WHEN deliveries.status = 'completed' THEN deliveries.status
        ELSE outcome.status END,
      completed_at = CASE WHEN outcome.status = 'completed'
        THEN coalesce(deliveries.completed_at, now()) ELSE deliveries.completed_at END,
      last_error = CASE WHEN deliveries.status = 'completed' OR outcome.status = 'completed'
        THEN NULL ELSE outcome.error END,
      leased_until = NULL, retry_count = outcome.retry_count,
      next_attempt_at = outcome.next_attempt_at,
      waiting = CASE WHEN outcome.status = 'retrying' THEN 'retry' END
    FROM outcome WHERE deliveries.id = outcome.id AND deliveries.id = ANY(ARRAY[:did::uuid])
      AND deliveries.id BETWEEN :did::uuid AND :did::uuid
    RETURNING deliveries.id, deliveries.attempts, deliveries.subscription_id),
  step AS (SELECT unnested.*, 5::integer AS threshold
    FROM unnest(ARRAY['00000000-0000-7000-8000-000000000004'::uuid], ARRAY[true], ARRAY[0],
      ARRAY[0], ARRAY[NULL]::text[]) AS unnested (subscription_id, reset, early, failures,
      last_error)
    WHERE EXISTS (SELECT 1 FROM updated WHERE updated.subscription_id = unnested.subscription_id)),
  breaker_locked AS (SELECT subscriptions.id, subscriptions.is_active AS was_active
    FROM subscriptions JOIN step ON step.subscription_id = subscriptions.id
    WHERE step.failures > 0 OR step.early > 0 OR subscriptions.consecutive_failures <> 0
    ORDER BY subscriptions.id FOR NO KEY UPDATE OF subscriptions),
  breaker AS (UPDATE subscriptions SET
      consecutive_failures = CASE WHEN step.reset THEN step.failures
        ELSE subscriptions.consecutive_failures + step.failures END,
      is_active = subscriptions.is_active
        AND subscriptions.consecutive_failures + step.early < step.threshold
        AND CASE WHEN step.reset THEN step.failures
          ELSE subscriptions.consecutive_failures + step.failures END < step.threshold,
      disabled_reason = CASE WHEN subscriptions.is_active AND (
          subscriptions.consecutive_failures + step.early >= step.threshold
          OR CASE WHEN step.reset THEN step.failures
            ELSE subscriptions.consecutive_failures + step.failures END >= step.threshold)
        THEN 'circuit breaker opened after '
          || greatest(subscriptions.consecutive_failures + step.early, step.failures)
          || ' consecutive failed attempts; last: ' || coalesce(step.last_error, 'unknown')
        ELSE subscriptions.disabled_reason END
    FROM step JOIN breaker_locked ON breaker_locked.id = step.subscription_id
    WHERE subscriptions.id = step.subscription_id
      AND (step.failures > 0 OR step.early > 0 OR subscriptions.consecutive_failures <> 0)
    RETURNING breaker_locked.was_active AND NOT subscriptions.is_active AS tripped),
  inserted AS (INSERT INTO delivery_attempts (delivery_id, subscription_id, attempt, started_at,
      duration_ms, status_code, error, response_body)
    SELECT updated.id, updated.subscription_id, updated.attempts, outcome.started_at,
      outcome.duration_ms, outcome.status_code, outcome.error, outcome.response_body
    FROM updated JOIN outcome ON outcome.id = updated.id)
  SELECT count(*) FROM breaker WHERE tripped;
SELECT 1;
EOF
cat "$work/ingest.sql" "$work/claim.sql" "$work/record.sql" >"$work/main.sql"

# The floor: main's record, and its other two reduced to what they cannot do without.
cat >"$work/floor.sql" <<'EOF'
SELECT new_event_id() AS id \gset
WITH e AS (INSERT INTO events (id, received_at, source_id, body, payload, content_type, headers,
      path, query)
    VALUES (:id::uuid, now(), '00000000-0000-7000-8000-000000000003', '{"a":1}'::bytea,
      '{"a":1}'::jsonb, 'application/json', '{}'::jsonb, '', '') RETURNING id)
  INSERT INTO deliveries (id, event_id, subscription_id, next_attempt_at)
  SELECT delivery_id(e.id), e.id, '00000000-0000-7000-8000-000000000004', now() FROM e
  RETURNING id AS did \gset
UPDATE deliveries SET leased_until = now() + interval '30 seconds', republishes = 0
  WHERE deliveries.id = :did::uuid AND deliveries.status NOT IN ('completed', 'failed')
    AND (deliveries.leased_until IS NULL OR deliveries.leased_until < now())
    AND deliveries.retry_count = 0
  RETURNING deliveries.id, deliveries.subscription_id;
EOF
cat "$work/record.sql" >>"$work/floor.sql"

generic='-c plan_cache_mode=force_generic_plan -c enable_seqscan=off'
run() { # chain, database, settings: each statement's mean latency, in order
    PGOPTIONS="-c jit=off -c synchronous_commit=off $3" pgbench -h 127.0.0.1 -U postgres -n \
        -M prepared -T "$seconds" -r -f "$work/$1.sql" "$2" 2>&1 |
        awk '/^ +[0-9.]+ +[0-9]+ +/ { printf "%s ", $1 }'
}
# A chain's statements: the id, ingest, the read or claim, the record, and `SELECT 1`.
report() { # name, the record's share, the latencies
    awk -v name="$1" -v share="$2" 'NF != 5 { print "  " name ": pgbench failed"; exit 1 } {
        printf "  %-8s %6.3f %6.3f %6.3f %6.3f", name, $2, $3, $4, $5
        printf "   per event %.3f ms, less round trips %.3f ms\n", $2 + $3 + share * $4,
            ($2 - $5) + ($3 - $5) + share * ($4 - $5)
    }' <<<"$3"
}
echo "ms per statement (ingest, read or claim, record, SELECT 1); per event, a record counts 1"
echo "for 717d3c0, 0.1 for main and the floor"
for round in $(seq 1 "$rounds"); do
    echo "round $round of $rounds ($(date -u +%H:%M:%S) UTC)"
    report 717d3c0 1 "$(run old bench_statements_old '')"
    report main 0.1 "$(run main bench_statements_main "$generic")"
    report floor 0.1 "$(run floor bench_statements_main "$generic")"
done
