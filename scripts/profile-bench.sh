#!/usr/bin/env bash
# Where the whole stack's CPU goes during one phase of the load benchmark: runs
# `benches/relay.rs`, samples every process on the machine with `perf record` while the phase
# runs, then sorts the samples by process (PostgreSQL, the relay, the load and sink, RabbitMQ,
# idle) and PostgreSQL's by what its backends were doing (starting a statement's executor,
# running it, index inserts, commits, the protocol...). See BENCHMARKS.md.
#
#   scripts/profile-bench.sh moderate|full [OUT]
#
# moderate: 20 s inside the first open-loop phase (BENCH_RATE, 500/s by default), run for 40 s;
# full: 12 s inside the full-speed phase, of 60,000 events. OUT (target/profile/<time> by
# default) keeps perf's data, its samples as text and the benchmark's output.
# BENCH_SPENZA=<binary> profiles another build, such as one `scripts/bench-compare.sh` made.
# The sampling itself costs CPU: take the benchmark's figures from bench-compare.sh, not here.
# Needs perf (Debian's linux-perf).
set -euo pipefail

phase=${1:?moderate or full}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${2:-$root/target/profile/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
command -v perf >/dev/null || { echo "perf is missing: apt-get install linux-perf" >&2; exit 1; }

./scripts/services.sh
bench=$(cargo bench --bench relay --no-run 2>&1 | tee "$out/build.log" |
    sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -n 1)
[ -n "$bench" ] || { cat "$out/build.log"; exit 1; }

log="$out/bench.txt"
case "$phase" in
    moderate)
        BENCH_SECONDS=40 "$bench" --bench >"$log" 2>&1 &
        # The first phase starts once the benchmark has said how it counts statements.
        ready() { grep -q '^postgres statements' "$log"; }
        settle=5 seconds=20 ;;
    full)
        BENCH_SECONDS=6 BENCH_EVENTS=60000 "$bench" --bench >"$log" 2>&1 &
        # Full speed starts as the high-rate phase has been reported (its last line: commits).
        ready() { awk -v high="^open loop, ${BENCH_HIGH_RATE:-2000} events/s" \
            '$0 ~ high { seen = 1 } seen && /commits per/ { found = 1 } END { exit !found }' "$log"; }
        settle=1 seconds=12 ;;
    *) echo "moderate or full" >&2; exit 2 ;;
esac
runner=$!
for _ in $(seq 1 600); do
    ready && break
    kill -0 "$runner" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.5
done
ready || { echo "the phase did not start within 5 min" >&2; kill "$runner"; exit 1; }
sleep "$settle"
perf record -q -e cpu-clock -F 499 -a -g -o "$out/perf.data" -- sleep "$seconds"
wait "$runner"
perf script -i "$out/perf.data" -F comm,pid,ip,sym 2>/dev/null >"$out/samples.txt"
relay=$(sed -n 's/^relay pid \([0-9]*\).*/\1/p' "$log")

python3 - "$out/samples.txt" "$relay" "$runner" <<'EOF'
import collections, re, sys

# One sample: the thread's name and process, then its stack, innermost frame first.
samples, current = [], None
for line in open(sys.argv[1]):
    if line.strip() and not line[0].isspace():
        thread, pid = line.rsplit(None, 1)
        current = (thread.strip(), pid, [])
        samples.append(current)
    elif line.strip() and current:
        current[2].append(line.split(None, 1)[-1].strip().split('+')[0])
relay, load = sys.argv[2], sys.argv[3]

def group(thread, pid):
    if thread == 'postgres':
        return 'PostgreSQL'
    if pid == relay:
        return 'relay'
    if pid == load:
        return 'load and sink'
    if thread == 'swapper':
        return 'idle'
    if re.match(r'(\d+_)?(scheduler|dirty_|poller|aux|erl_|inet_|beam)', thread):
        return 'RabbitMQ'
    return 'other'

groups = collections.Counter(group(thread, pid) for thread, pid, _ in samples)
print(f'{len(samples)} samples')
for name, count in groups.most_common():
    print(f'  {name:<24} {100 * count / len(samples):5.1f} %')

# The first of these found on a PostgreSQL backend's stack names what it was doing.
doing = [
    ('planning', 'standard_planner|GetCachedPlan|BuildCachedPlan'),
    ("starting the executor (plan's nodes)", 'standard_ExecutorStart'),
    ('ending the executor', 'standard_ExecutorEnd'),
    ('after triggers (key checks)', 'standard_ExecutorFinish'),
    ('index inserts', 'ExecInsertIndexTuples'),
    ('running the statement', 'standard_ExecutorRun'),
    ('commit (and WAL flush)', 'CommitTransaction|XLogFlush'),
    ('decoding parameters', 'ReceiveFunctionCall|exec_bind_message'),
    ('sending and receiving', '__send|__libc_recv|secure_read|secure_write|socket_flush'),
    ('background processes', 'CheckpointerMain|WalWriterMain|BackgroundWriterMain|ServerLoop'),
]
backends = [frames for thread, _, frames in samples if thread == 'postgres']
counts = collections.Counter()
for frames in backends:
    names = set(frames)
    for name, pattern in doing:
        if any(re.fullmatch(pattern, frame) for frame in names):
            counts[name] += 1
            break
    else:
        counts['the rest (protocol, memory, transaction start)'] += 1
print(f'PostgreSQL, {len(backends)} samples:')
for name, count in counts.most_common():
    print(f'  {name:<46} {100 * count / max(1, len(backends)):5.1f} %')
EOF
