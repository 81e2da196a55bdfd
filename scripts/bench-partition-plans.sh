#!/usr/bin/env bash
# What a statement costs as the partitions of a table grow, with a cached generic plan and with
# a custom plan: an UPDATE of 8 rows of the newest partition found through a join on unnest
# (pruned row by row at run time), on tables of 1 (not partitioned), 13, 30 and 90 range
# partitions by uuid v7 id (one a day), 10,000 rows each. Then the relay's shape, generic: the
# ids as one array, named again in `= ANY`, with and without their range. pgbench, one client,
# 15 s a figure; each table in a database of its own (pb_<partitions>), dropped after. See
# BENCHMARKS.md.
#
#   scripts/bench-partition-plans.sh
set -euo pipefail
P="env PGOPTIONS=-cclient_min_messages=warning psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -q"
day=86400000
now=$(( $(date +%s) * 1000 ))
for parts in 1 13 30 90; do
  db=pb_$parts
  $P -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  if [ $parts = 1 ]; then
    $P -d $db -c "CREATE TABLE pt (id uuid PRIMARY KEY, v int, status text)"
  else
    $P -d $db -c "CREATE TABLE pt (id uuid PRIMARY KEY, v int, status text) PARTITION BY RANGE (id)"
    for d in $(seq 0 $((parts-1))); do
      lo=$(( now - (d+1)*day )); hi=$(( now - d*day ))
      [ $d = 0 ] && hi=$(( now + day ))
      $P -d $db -c "CREATE TABLE pt_$d PARTITION OF pt FOR VALUES FROM ('$(printf %012x $lo)00000000000000000000') TO ('$(printf %012x $hi)00000000000000000000')"
    done
  fi
  $P -d $db -c "INSERT INTO pt SELECT (lpad(to_hex($now - (n % $parts) * $day::bigint - n), 12, '0') || '70008000000000000000')::uuid, 0, 'pending' FROM generate_series(1, 10000 * $parts) n" -c "CREATE INDEX ON pt (status)" -c "ANALYZE pt"
  script=$(mktemp)
  cat > "$script" <<SQL
\set k random(1, 9990)
UPDATE pt SET v = v + 1 FROM unnest(ARRAY[
  (lpad(to_hex($now - :k::bigint * $parts), 12, '0') || '70008000000000000000')::uuid,
  (lpad(to_hex($now - (:k::bigint + 1) * $parts), 12, '0') || '70008000000000000000')::uuid,
  (lpad(to_hex($now - (:k::bigint + 2) * $parts), 12, '0') || '70008000000000000000')::uuid,
  (lpad(to_hex($now - (:k::bigint + 3) * $parts), 12, '0') || '70008000000000000000')::uuid,
  (lpad(to_hex($now - (:k::bigint + 4) * $parts), 12, '0') || '70008000000000000000')::uuid,
  (lpad(to_hex($now - (:k::bigint + 5) * $parts), 12, '0') || '70008000000000000000')::uuid,
  (lpad(to_hex($now - (:k::bigint + 6) * $parts), 12, '0') || '70008000000000000000')::uuid,
  (lpad(to_hex($now - (:k::bigint + 7) * $parts), 12, '0') || '70008000000000000000')::uuid
]) AS w (id) WHERE pt.id = w.id;
SQL
  for mode in force_generic_plan force_custom_plan; do
    tps=$(PGOPTIONS="-c plan_cache_mode=$mode -c synchronous_commit=off" pgbench -h 127.0.0.1 -U postgres -n -M prepared -c 1 -T 15 -f "$script" $db 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    echo "$parts partitions, $mode: $tps tps"
  done
  # The relay's shape: the batch's ids as one array parameter, named again in `= ANY` (which a
  # generic plan cannot prune on), with and without their range (which it prunes on as it
  # starts). The ids are read first, in the same transaction, for both alike.
  for range in "" "AND pt.id BETWEEN :lo::uuid AND :hi::uuid"; do
    cat > "$script" <<SQL
\set k random(1, 9990)
SELECT ARRAY[$(for i in 0 1 2 3 4 5 6 7; do printf "(lpad(to_hex($now - (:k::bigint + $i) * $parts), 12, '0') || '70008000000000000000')::uuid"; [ $i = 7 ] || printf ', '; done)]::text AS ids,
  (lpad(to_hex($now - (:k::bigint + 7) * $parts), 12, '0') || '70008000000000000000') AS lo,
  (lpad(to_hex($now - :k::bigint * $parts), 12, '0') || '70008000000000000000') AS hi \\gset
UPDATE pt SET v = v + 1 FROM unnest(:ids::uuid[]) AS w (id)
WHERE pt.id = w.id AND pt.id = ANY(:ids::uuid[]) $range;
SQL
    tps=$(PGOPTIONS="-c plan_cache_mode=force_generic_plan -c enable_seqscan=off -c synchronous_commit=off" pgbench -h 127.0.0.1 -U postgres -n -M prepared -c 1 -T 15 -f "$script" $db 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    echo "$parts partitions, generic, = ANY${range:+ and the range}: $tps tps"
  done
  $P -d postgres -c "DROP DATABASE $db"
  rm -f "$script"
done
