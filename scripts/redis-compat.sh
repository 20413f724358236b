#!/usr/bin/env bash
# Runs Redis's own test files (external-server mode) against a fresh
# one-node Seshat per file and prints passed/failed/skipped per file.
#
#   scripts/redis-compat.sh REDIS_DIR [FILE ...]
#
# REDIS_DIR holds `runtest` and `tests/` of the redis/redis repository at
# tag 7.0.15 (for example: git --git-dir=<redis.git> archive 7.0.15 tests
# runtest | tar -x -C REDIS_DIR). Never extract it into this repository.
# FILE defaults to the files issue 12 is measured by. Needs tclsh.
#
# Skipped: tests listed in scripts/redis-compat/skip-<file>.txt (each list
# is explained in scripts/redis-compat/README.md) and tests tagged for
# features Seshat declares absent (DEBUG, replication, maxmemory). Object
# encodings are not checked (--ignore-encoding): Seshat has one per type.
#
# Environment: SESHAT_BIN (default: the release build in CARGO_TARGET_DIR
# or ./target), PORT (default 16379), RUNTEST_ARGS (more arguments for
# runtest, e.g. "--tags -masterauth").
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
redis_dir=${1:?usage: $0 REDIS_DIR [FILE ...]}
shift
files=("$@")
((${#files[@]})) || files=(unit/type/string unit/type/incr unit/keyspace unit/expire unit/multi unit/scan)
command -v tclsh >/dev/null || { echo "redis-compat: tclsh is needed (apt-get install tcl)" >&2; exit 1; }
bin=${SESHAT_BIN:-${CARGO_TARGET_DIR:-$here/../target}/release/seshat}
[ -x "$bin" ] || { echo "redis-compat: no seshat binary at $bin (run make build or set SESHAT_BIN)" >&2; exit 1; }
port=${PORT:-16379}
work=$(mktemp -d)
pid=""
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=""; }
trap 'stop; rm -rf "$work"' EXIT

if redis-cli -p "$port" PING >/dev/null 2>&1; then
  echo "redis-compat: something already answers on port $port; stop it or set PORT" >&2
  exit 1
fi
printf '%-20s %6s %6s %8s %8s\n' file passed failed skipped ignored
for f in "${files[@]}"; do
  name=$(basename "$f")
  rm -rf "$work/data"
  # Values up to the ceiling of 1 MiB: Redis's tests use large values.
  "$bin" --client-addr "127.0.0.1:$port" --raft-addr "127.0.0.1:$((port + 1000))" \
    --http-addr "127.0.0.1:$((port + 2000))" --data-dir "$work/data" \
    --max-value-bytes 1048576 >"$work/$name.server.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    [ "$(redis-cli -p "$port" PING 2>/dev/null)" = PONG ] && break
    sleep 0.1
  done
  skip=()
  [ -f "$here/redis-compat/skip-$name.txt" ] && skip=(--skipfile "$here/redis-compat/skip-$name.txt")
  # The harness listens on its own base port: derive it from PORT so
  # several runs can go side by side.
  (cd "$redis_dir" && ./runtest --host 127.0.0.1 --port "$port" --baseport "$((port + 5000))" --singledb --single "$f" \
    --tags -needs:debug --tags -needs:repl --tags -needs:config-maxmemory --ignore-encoding "${skip[@]}" ${RUNTEST_ARGS:-} 2>&1) |
    sed 's/\x1b\[[0-9;]*m//g' >"$work/$name.log" || true
  stop
  log="$work/$name.log"
  printf '%-20s %6s %6s %8s %8s\n' "$f" "$(grep -c '^\[ok\]' "$log")" \
    "$(($(grep -c '^\[err\]' "$log") + $(grep -c '^\[exception\]' "$log")))" \
    "$(grep -c '^\[skip\]' "$log")" "$(grep -c '^\[ignore\]' "$log")"
  grep -E '^\[(err|exception)\]' -A 3 "$log" || true
done
