#!/usr/bin/env bash
# Runs the load benchmark against older commits' relays and this checkout's, alternated back to
# back on this machine, and prints the median of each figure per build and phase.
#
#   scripts/bench-compare.sh [ROUNDS] [COMMIT...]      # defaults: 3 717d3c0
#
# Each older commit's release binary is built from history in a worktree of its own (kept, with
# its target directory, under $BENCH_BASE_DIR, /var/cache/spenza-bench by default, so a second
# comparison does not build it again). Every build runs under this checkout's benchmark
# (`benches/relay.rs`, through BENCH_SPENZA), so all are measured the same way; phases a build
# cannot run (filters and fan-out before routing) are skipped for it. Each run's full output is
# kept in $BENCH_OUT (target/bench-compare/<time> by default), with the relay's log beside it.
# Other BENCH_* settings pass through to the benchmark.
set -euo pipefail

rounds=${1:-3}
shift || true
bases=("$@")
[ ${#bases[@]} -gt 0 ] || bases=(717d3c0)
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
base_dir=${BENCH_BASE_DIR:-/var/cache/spenza-bench}
out=${BENCH_OUT:-$root/target/bench-compare/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out" "$base_dir"

./scripts/services.sh

builds=()
for base in "${bases[@]}"; do
    commit=$(git rev-parse --verify "$base^{commit}")
    worktree="$base_dir/$commit"
    if [ ! -x "$worktree/target/release/spenza" ]; then
        echo "Building $base ($commit) in $worktree..."
        if [ ! -e "$worktree/.git" ]; then
            git worktree add --detach --force "$worktree" "$commit" >/dev/null
        fi
        (cd "$worktree" && CARGO_TARGET_DIR="$worktree/target" cargo build --release --bin spenza)
    fi
    cp "$worktree/target/release/spenza" "$out/spenza-$base"
    builds+=("$base")
done

echo "Building this checkout's relay and benchmark..."
bench=$(cargo bench --bench relay --no-run 2>&1 | tee "$out/build.log" |
    sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -n 1)
[ -n "$bench" ] || { cat "$out/build.log"; exit 1; }
cp "${CARGO_TARGET_DIR:-target}/release/spenza" "$out/spenza-new"
cp "$bench" "$out/bench"
builds+=(new)

for round in $(seq 1 "$rounds"); do
    for build in "${builds[@]}"; do
        echo "Round $round of $rounds: $build ($(date -u +%H:%M:%S) UTC)"
        BENCH_SPENZA="$out/spenza-$build" BENCH_RELAY_LOG="$out/$build-$round.log" \
            "$out/bench" --bench >"$out/$build-$round.txt" 2>&1 ||
            { tail -n 20 "$out/$build-$round.txt"; exit 1; }
    done
done

echo
echo "new: $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' with uncommitted changes'); $rounds rounds; runs in $out"
python3 - "$out" "$rounds" "${builds[@]}" <<'PYTHON'
import re, statistics, sys

out, rounds, builds = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
# What is read from each phase's lines, as (label, pattern); each group is one figure.
FIGURES = [
    ("missing", r"missing (\d+)"),
    ("ingest p50 ms", r"ingest latency\s+p50 ([\d.]+) ms"),
    ("ingest p99 ms", r"ingest latency.* p99 ([\d.]+) ms"),
    ("e2e p50 ms", r"end-to-end latency\s+p50 ([\d.]+) ms"),
    ("e2e p99 ms", r"end-to-end latency.* p99 ([\d.]+) ms"),
    ("deliveries/s", r"deliveries\s+([\d.]+)/s"),
    ("relay cpu", r"stack cpu .*relay (\d+)"),
    ("postgres cpu", r"stack cpu .*postgres (\d+)"),
    ("rabbitmq cpu", r"stack cpu .*rabbitmq (\d+)"),
    ("others cpu", r"stack cpu .*others (\d+)"),
    ("machine cpu", r"stack cpu .*machine (\d+)"),
    ("switches/event", r"relay threads\s+([\d.]+) context"),
    ("wal B/event", r"postgres wal\s+(\d+) bytes"),
    ("commits/event", r"postgres\s+([\d.]+) commits"),
    ("rows ins/event", r"postgres rows\s+([\d.]+) inserted"),
    ("rows upd/event", r"([\d.]+) updated per"),
    ("HOT updates %", r"\((\d+) % of updates HOT\)"),
    ("broker published", r"rabbitmq\s+([\d.]+) published"),
    ("broker acked", r"([\d.]+) acknowledged"),
    ("peak MiB", r"relay memory\s+peak ([\d.]+) MiB"),
]


def phases(path):
    found, name = {}, None
    for line in open(path):
        if line.startswith(("open loop", "full speed")):
            name = line.strip()
            found[name] = {}
        elif name and line.startswith("  "):
            for label, pattern in FIGURES:
                match = re.search(pattern, line)
                if match and label not in found[name]:
                    found[name][label] = float(match.group(1))
    return found


runs = {b: [phases(f"{out}/{b}-{r}.txt") for r in range(1, rounds + 1)] for b in builds}
names = list(dict.fromkeys(n for b in runs.values() for run in b for n in run))
for name in names:
    print(f"\n{name}  (medians of {rounds}; cpu in ms per 1,000 delivered events)")
    print(f"  {'':18}" + "".join(f" {b:>10}" for b in builds) + f" {'new/' + builds[0]:>12}")
    for label, _ in FIGURES:
        medians = {}
        for build, build_runs in runs.items():
            values = [run[name][label] for run in build_runs if label in run.get(name, {})]
            medians[build] = statistics.median(values) if values else None
        if all(v is None for v in medians.values()):
            continue
        shown = "".join(
            f" {'-':>10}" if v is None else f" {v:>10.2f}" if v < 10 else f" {v:>10.1f}"
            for v in medians.values()
        )
        first, new = medians[builds[0]], medians["new"]
        ratio = f" {new / first:>12.2f}" if first and new is not None else ""
        print(f"  {label:18}{shown}{ratio}")
PYTHON
