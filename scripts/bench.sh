#!/usr/bin/env bash
# Seshat's benchmark: `make bench` (or ./scripts/bench.sh).
#
# On this one machine, in one run, it
#   1. installs missing tools (scripts/deps.sh: redis-server, redis-tools),
#   2. builds the release binary (`make build`) unless SESHAT_BIN names one,
#      in CARGO_TARGET_DIR [~/.cache/seshat-target, the cache .ci/run uses],
#   3. starts a 3-node Seshat cluster on 127.0.0.1 (`seshat dev-cluster`),
#      waits for a leader and finds the leader's client port,
#   4. starts two redis-server instances on 127.0.0.1, each in its own temp
#      dir, with AOF on and RDB off: `--appendfsync always` (fsync before
#      every reply, the same promise Seshat makes) and `--appendfsync
#      everysec` (Redis's default durability),
#   5. runs the same redis-benchmark workloads against the Seshat leader and
#      both redis-servers: SET then GET, 64-byte values, 50 clients, random
#      keys out of 100,000, unpipelined and with -P 16; SET and GET also
#      against the leader's TLS port (certificates made by openssl in the
#      temp dir; `redis-benchmark --tls`), for the cost of TLS,
#   6. offers SET and GET at fixed rates (BENCH_RATES, open loop, with
#      seshat-loadgen: latency counted from when each request was due, so
#      queueing is not hidden) to the Seshat leader and redis `always`,
#      raising the rate until one saturates,
#   7. compares 1 and BENCH_SHARDS data groups: redis-benchmark (SET, GET,
#      unpipelined and -P 16) first against the 1-group cluster's leader,
#      then with --cluster against a new cluster with --shards BENCH_SHARDS
#      on the same ports (leaders spread), with the nodes' CPU time per
#      request,
#   8. prints one markdown table (ops/s, p50/p99/p99.9 latency in ms, ratios),
#      a table of TLS against plain TCP on the same nodes, the offered-load
#      table, then per Seshat run where a request spent its time (the nodes'
#      stage_seconds metrics, read before and after the run), plus the
#      machine and date, on stdout; progress goes to stderr.
# Every process and temp dir it starts is removed on exit, failure or Ctrl-C.
# After the build, the run takes about 4.5 minutes on a 2-core machine and
# is cut off after BENCH_TIME_LIMIT seconds.
#
# Settings (environment):
#   SESHAT_BIN              seshat binary to use; skips `make build`
#   BENCH_REQUESTS          requests per run (-n)                  [100000]
#   BENCH_CLIENTS           parallel connections (-c)              [50]
#   BENCH_PIPELINE          pipeline depth of the pipelined runs   [16]
#   BENCH_VALUE_BYTES       value size (-d)                        [64]
#   BENCH_KEYSPACE          random key range (-r)                  [100000]
#   BENCH_CLIENT_PORT_BASE  Seshat client port of node 1 (nodes use base..base+2) [16379]
#   BENCH_RAFT_PORT_BASE    Seshat Raft port of node 1             [17379]
#   BENCH_HTTP_PORT_BASE    Seshat HTTP port of node 1             [19090]
#   BENCH_TLS_PORT_BASE     Seshat TLS client port of node 1       [16389]
#   BENCH_TLS               0 skips the TLS runs                   [1]
#   BENCH_REDIS_ALWAYS_PORT   redis-server, appendfsync always     [16479]
#   BENCH_REDIS_EVERYSEC_PORT redis-server, appendfsync everysec   [16480]
#   BENCH_TMPDIR            where the temp dir (all data) goes     [$TMPDIR or /tmp]
#   BENCH_RAW_DIR           if set, raw redis-benchmark outputs and node logs are copied here
#   BENCH_TIME_LIMIT        seconds allowed after the build        [720]
#   BENCH_RATES             offered rates, ops/s, rising           ["2000 5000 10000 20000"]
#   BENCH_RATE_SECS         measured seconds per offered rate      [5]
#   BENCH_SHARDS            data groups of the sharded comparison; 0 skips it [3]
set -euo pipefail

cd "$(dirname "$0")/.."

REQUESTS=${BENCH_REQUESTS:-100000}
CLIENTS=${BENCH_CLIENTS:-50}
PIPELINE=${BENCH_PIPELINE:-16}
VALUE_BYTES=${BENCH_VALUE_BYTES:-64}
KEYSPACE=${BENCH_KEYSPACE:-100000}
CLIENT_BASE=${BENCH_CLIENT_PORT_BASE:-16379}
RAFT_BASE=${BENCH_RAFT_PORT_BASE:-17379}
HTTP_BASE=${BENCH_HTTP_PORT_BASE:-19090}
TLS_BASE=${BENCH_TLS_PORT_BASE:-16389}
TLS=${BENCH_TLS:-1}
ALWAYS_PORT=${BENCH_REDIS_ALWAYS_PORT:-16479}
EVERYSEC_PORT=${BENCH_REDIS_EVERYSEC_PORT:-16480}
TIME_LIMIT=${BENCH_TIME_LIMIT:-720}
RATES=${BENCH_RATES:-2000 5000 10000 20000}
RATE_SECS=${BENCH_RATE_SECS:-5}
SHARDS=${BENCH_SHARDS:-3}
NODES=3

log() { echo "bench [$(($(date +%s) - START))s]: $*" >&2; }
die() { log "error: $*"; exit 1; }
START=$(date +%s)

./scripts/deps.sh
for tool in redis-server redis-cli redis-benchmark python3 timeout openssl; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
done

if [ -n "${SESHAT_BIN:-}" ]; then
  [ -x "$SESHAT_BIN" ] || die "SESHAT_BIN=$SESHAT_BIN is not an executable"
  bin_src=$SESHAT_BIN
  loadgen_src=${LOADGEN_BIN:-$(dirname "$SESHAT_BIN")/seshat-loadgen}
  [ -x "$loadgen_src" ] || die "no seshat-loadgen next to SESHAT_BIN (cargo build --release -p seshat-loadgen, or set LOADGEN_BIN)"
else
  # The build cache CI uses (.ci/run): a fresh clone on a machine that has
  # built Seshat before compiles only the workspace crates (~1 min here), not
  # RocksDB again (~17 min on 2 cores). CARGO_TARGET_DIR overrides it.
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/seshat-target}
  mkdir -p "$CARGO_TARGET_DIR"
  log "building (make build, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  make build >&2
  log "build done"
  bin_src=$CARGO_TARGET_DIR/release/seshat
  loadgen_src=$CARGO_TARGET_DIR/release/seshat-loadgen
fi

# --- state for cleanup -------------------------------------------------------
TMP=""
DC_PID=""
BENCH_PID=""
REDIS_PIDS=()

stop_pid() { # pid name seconds: TERM, wait, then KILL
  local pid=$1 name=$2 secs=$3 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "bench: $name (pid $pid) ignored SIGTERM for ${secs}s; killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$? pid f
  set +e
  trap - EXIT INT TERM
  if [ -n "$BENCH_PID" ]; then
    pkill -INT -P "$BENCH_PID" 2>/dev/null # redis-benchmark under timeout
    stop_pid "$BENCH_PID" "redis-benchmark" 5
    wait "$BENCH_PID" 2>/dev/null
  fi
  if [ -n "$DC_PID" ]; then
    stop_pid "$DC_PID" "seshat dev-cluster" 20
    wait "$DC_PID" 2>/dev/null
  fi
  # Nodes left behind (dev-cluster killed before it could stop them).
  if [ -n "$TMP" ]; then
    for f in "$TMP"/cluster/node-*/pid; do
      [ -f "$f" ] || continue
      pid=$(cat "$f")
      if [ -n "$pid" ] && grep -q seshat "/proc/$pid/cmdline" 2>/dev/null; then
        stop_pid "$pid" "seshat node" 5
      fi
    done
  fi
  for pid in "${REDIS_PIDS[@]}"; do
    stop_pid "$pid" "redis-server" 10
    wait "$pid" 2>/dev/null
  done
  if [ -n "$TMP" ]; then
    if [ -n "${BENCH_RAW_DIR:-}" ]; then
      mkdir -p "$BENCH_RAW_DIR"
      cp -r "$TMP"/raw "$BENCH_RAW_DIR"/ 2>/dev/null
      for f in "$TMP"/cluster/node-*/seshat.log; do
        [ -f "$f" ] && cp "$f" "$BENCH_RAW_DIR/$(basename "$(dirname "$f")").log"
      done
      for f in "$TMP"/redis-*/redis.log; do
        [ -f "$f" ] && cp "$f" "$BENCH_RAW_DIR/$(basename "$(dirname "$f")").log"
      done
      cp "$TMP"/dev-cluster.log "$BENCH_RAW_DIR"/ 2>/dev/null
    fi
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_in_use() { (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in $(seq "$CLIENT_BASE" $((CLIENT_BASE + NODES - 1))) \
         $(seq "$RAFT_BASE" $((RAFT_BASE + NODES - 1))) \
         $(seq "$HTTP_BASE" $((HTTP_BASE + NODES - 1))) \
         $(seq "$TLS_BASE" $((TLS_BASE + NODES - 1))) \
         "$ALWAYS_PORT" "$EVERYSEC_PORT"; do
  port_in_use "$p" && die "port $p is already in use (see BENCH_*_PORT* settings)"
done

TMP=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/seshat-bench.XXXXXX")
mkdir -p "$TMP/raw"
# A private copy, so a rebuild during the run cannot swap the binary.
cp "$bin_src" "$TMP/seshat"
cp "$loadgen_src" "$TMP/seshat-loadgen"
DEADLINE=$(($(date +%s) + TIME_LIMIT))

# --- TLS certificates ----------------------------------------------------------
TLS_DC_ARGS=()
if [ "$TLS" = 1 ]; then
  mkdir -p "$TMP/tls"
  (
    cd "$TMP/tls"
    ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    openssl req -x509 "${ec[@]}" -days 2 -subj /CN=seshat-bench-ca -keyout ca.key -out ca.crt
    openssl req "${ec[@]}" -subj /CN=localhost -keyout server.key -out server.csr
    echo "subjectAltName=IP:127.0.0.1,DNS:localhost" >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
      -extfile server.ext -out server.crt
  ) >"$TMP/tls/openssl.log" 2>&1 || { cat "$TMP/tls/openssl.log" >&2; die "openssl could not make certificates"; }
  TLS_DC_ARGS=(--tls-port-base "$TLS_BASE" -- --tls-cert-file "$TMP/tls/server.crt" --tls-key-file "$TMP/tls/server.key")
fi

# --- Seshat ------------------------------------------------------------------
log "starting $NODES Seshat nodes (client ports $CLIENT_BASE..$((CLIENT_BASE + NODES - 1))) in $TMP/cluster"
"$TMP/seshat" dev-cluster --nodes "$NODES" --dir "$TMP/cluster" \
  --client-port-base "$CLIENT_BASE" --raft-port-base "$RAFT_BASE" \
  --http-port-base "$HTTP_BASE" "${TLS_DC_ARGS[@]}" </dev/null >"$TMP/dev-cluster.log" 2>&1 &
DC_PID=$!

raft_field() { # port field
  redis-cli -h 127.0.0.1 -p "$1" INFO raft 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"
}
find_leader() { # prints the leader's node id, or nothing
  local i role
  for ((i = 1; i <= NODES; i++)); do
    role=$(raft_field $((CLIENT_BASE + i - 1)) raft_role)
    if [ "$role" = Leader ]; then
      raft_field $((CLIENT_BASE + i - 1)) raft_leader_id
      return
    fi
  done
}

LEADER=""
for ((t = 0; t < 300; t++)); do
  kill -0 "$DC_PID" 2>/dev/null || { cat "$TMP/dev-cluster.log" >&2; die "dev-cluster exited"; }
  LEADER=$(find_leader)
  [ -n "$LEADER" ] && break
  sleep 0.1
done
if [ -z "$LEADER" ]; then
  tail -n 20 "$TMP"/cluster/node-*/seshat.log >&2 || true
  die "no Seshat leader after 30 s"
fi
LEADER_PORT=$((CLIENT_BASE + LEADER - 1))
log "Seshat leader: node $LEADER, client port $LEADER_PORT"

# --- redis-server ------------------------------------------------------------
start_redis() { # name port fsync-policy
  local dir="$TMP/redis-$1" t
  mkdir -p "$dir"
  redis-server --bind 127.0.0.1 --port "$2" --dir "$dir" --daemonize no \
    --appendonly yes --appendfsync "$3" --save '' \
    --logfile "$dir/redis.log" </dev/null >/dev/null 2>&1 &
  REDIS_PIDS+=($!)
  for ((t = 0; t < 100; t++)); do
    [ "$(redis-cli -h 127.0.0.1 -p "$2" PING 2>/dev/null)" = PONG ] && return 0
    sleep 0.1
  done
  cat "$dir/redis.log" >&2 || true
  die "redis-server ($1) did not answer on port $2"
}
log "starting redis-server (appendfsync always) on port $ALWAYS_PORT"
start_redis always "$ALWAYS_PORT" always
log "starting redis-server (appendfsync everysec) on port $EVERYSEC_PORT"
start_redis everysec "$EVERYSEC_PORT" everysec

# --- benchmark ---------------------------------------------------------------
declare -A PORT=([seshat]=$LEADER_PORT [redis-always]=$ALWAYS_PORT [redis-everysec]=$EVERYSEC_PORT
                 [seshat-tls]=$((TLS_BASE + LEADER - 1)))
declare -A EXTRA=([seshat-tls]="--tls --cacert $TMP/tls/ca.crt")
TARGETS=(seshat redis-always redis-everysec)
TLS_TARGETS=("${TARGETS[@]}")
[ "$TLS" = 1 ] && TLS_TARGETS=(seshat seshat-tls redis-always redis-everysec)
MANIFEST="$TMP/raw/manifest.tsv"
: >"$MANIFEST"

scrape_stages() { # label: saves every Seshat node's /metrics as raw/<label>-node<i>.metrics
  local i
  for ((i = 1; i <= NODES; i++)); do
    python3 scripts/bench_parse.py scrape "http://127.0.0.1:$((HTTP_BASE + i - 1))/metrics" \
      "$TMP/raw/$1-node$i.metrics" || log "warning: cannot read node $i's /metrics"
  done
}

run_one() { # target workload pipeline
  local target=$1 workload=$2 pipeline=$3 left out rc
  left=$((DEADLINE - $(date +%s)))
  ((left > 0)) || die "time limit (BENCH_TIME_LIMIT=${TIME_LIMIT}s) reached before $target $workload -P $pipeline"
  out="$TMP/raw/$target-$workload-P$pipeline.txt"
  log "$target: $workload -P $pipeline (-n $REQUESTS -c $CLIENTS -d $VALUE_BYTES -r $KEYSPACE)"
  rc=0
  [ "$target" = seshat ] && scrape_stages "seshat-$workload-P$pipeline-before"
  # In the background, so SIGTERM/SIGINT reach the trap at once.
  # shellcheck disable=SC2086 # EXTRA holds several words
  timeout --foreground --signal=INT "$left" redis-benchmark -h 127.0.0.1 -p "${PORT[$target]}" ${EXTRA[$target]:-} \
    -t "$workload" -n "$REQUESTS" -c "$CLIENTS" -d "$VALUE_BYTES" -r "$KEYSPACE" \
    -P "$pipeline" --precision 3 -e >"$out" 2>&1 </dev/null &
  BENCH_PID=$!
  wait "$BENCH_PID" || rc=$?
  BENCH_PID=""
  [ "$target" = seshat ] && scrape_stages "seshat-$workload-P$pipeline-after"
  if ((rc != 0)); then
    tail -n 20 "$out" >&2
    ((rc == 124)) && die "time limit reached during $target $workload -P $pipeline"
    die "redis-benchmark failed (exit $rc) on $target $workload -P $pipeline"
  fi
  log "  $(python3 scripts/bench_parse.py one "$out" | awk '{printf "%s ops/s, p50 %s ms, p99 %s ms, p99.9 %s ms, %s error lines", $1, $2, $3, $4, $5}')"
  printf '%s\t%s\t%s\t%s\n' "$target" "$workload" "$pipeline" "$out" >>"$MANIFEST"
}

LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
BENCH_START=$(date +%s)
# SET before GET, so GETs mostly find keys; targets interleaved so a
# disturbance on the machine does not hit one system only (Seshat over TLS
# right after Seshat over TCP, for their ratio). INCR, MSET (10 keys per
# command), HSET, LPUSH and ZADD run unpipelined only and without TLS, to
# keep the run short.
for workload in set get incr mset hset lpush zadd; do
  pipelines=(1 "$PIPELINE")
  targets=("${TLS_TARGETS[@]}")
  case $workload in incr | mset | hset | lpush | zadd) pipelines=(1) targets=("${TARGETS[@]}") ;; esac
  for pipeline in "${pipelines[@]}"; do
    for target in "${targets[@]}"; do
      run_one "$target" "$workload" "$pipeline"
    done
  done
  if [ "$workload" = set ]; then
    KEYS=""
    for target in "${TARGETS[@]}"; do
      KEYS+="$target $(redis-cli -h 127.0.0.1 -p "${PORT[$target]}" DBSIZE 2>/dev/null | tr -d '\r'), "
    done
    log "keys after the SET runs: ${KEYS%, }"
  fi
done

# Offered load: each target gets rising rates until it saturates (the
# run reports saturation, or answers fewer than 95% of what was offered).
RATE_TABLE="$TMP/raw/rates.tsv"
: >"$RATE_TABLE"
for workload in set get; do
  for target in seshat redis-always; do
    for rate in $RATES; do
      left=$((DEADLINE - $(date +%s)))
      ((left > RATE_SECS + 30)) || die "time limit (BENCH_TIME_LIMIT=${TIME_LIMIT}s) reached before $target $workload at $rate/s"
      log "$target: $workload offered at $rate ops/s for ${RATE_SECS}s"
      line=$(timeout "$left" "$TMP/seshat-loadgen" --port "${PORT[$target]}" --command "$workload" \
        --rate "$rate" --duration "$RATE_SECS" --connections "$CLIENTS" --keyspace "$KEYSPACE" \
        --value-bytes "$VALUE_BYTES" 2>&1 </dev/null) || die "seshat-loadgen failed: $line"
      log "  $line"
      printf '%s\t%s\t%s\t%s\n' "$workload" "$rate" "$target" "$line" >>"$RATE_TABLE"
      achieved=$(sed -n 's/.*achieved=\([0-9]*\).*/\1/p' <<<"$line")
      if [[ "$line" == *saturated=1* ]] || ((achieved * 100 < rate * 95)); then
        break
      fi
    done
  done
done
LEADER_AFTER=$(find_leader)

# --- 1 group against SHARDS groups, through the cluster protocol --------------
node_cpu_ticks() { # the nodes' user+system CPU ticks, summed
  local f pid total=0 stat
  for f in "$TMP"/cluster/node-*/pid; do
    pid=$(cat "$f")
    stat=$(cut -d')' -f2 "/proc/$pid/stat" 2>/dev/null) || continue
    # Fields after "pid (comm)": state is 1st, utime 12th, stime 13th.
    total=$((total + $(awk '{print $12 + $13}' <<<"$stat")))
  done
  echo "$total"
}
cluster_run() { # shards workload pipeline
  local shards=$1 workload=$2 pipeline=$3 left out rc=0 before after
  left=$((DEADLINE - $(date +%s)))
  ((left > 0)) || die "time limit reached before the $shards-shard $workload -P $pipeline run"
  out="$TMP/raw/cluster-$shards-$workload-P$pipeline.txt"
  log "$shards shard(s): $workload -P $pipeline via redis-benchmark --cluster"
  # redis-benchmark --cluster needs three masters: one group has one, so
  # its run goes to the leader directly (what --cluster would do).
  local mode=(--cluster -p "$CLIENT_BASE")
  ((shards > 1)) || mode=(-p "$LEADER_PORT" -e)
  before=$(node_cpu_ticks)
  timeout --foreground --signal=INT "$left" redis-benchmark -h 127.0.0.1 "${mode[@]}" \
    -t "$workload" -n "$REQUESTS" -c "$CLIENTS" -d "$VALUE_BYTES" -r "$KEYSPACE" \
    -P "$pipeline" --precision 3 >"$out" 2>&1 </dev/null &
  BENCH_PID=$!
  wait "$BENCH_PID" || rc=$?
  BENCH_PID=""
  after=$(node_cpu_ticks)
  ((rc == 0)) || { tail -n 20 "$out" >&2; die "redis-benchmark --cluster failed (exit $rc)"; }
  read -r ops p50 p99 _ errs < <(python3 scripts/bench_parse.py one "$out")
  cpu_us=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$REQUESTS" 'BEGIN{printf "%.0f", t / hz * 1e6 / n}')
  log "  $ops ops/s, p50 $p50 ms, p99 $p99 ms, $cpu_us us CPU per request (3 nodes), $errs error lines"
  printf '| %s | %s | %s | %.0f | %s | %s | %s |\n' "$shards" "$workload" "$pipeline" "$ops" "$p50" "$p99" "$cpu_us" >>"$SHARD_TABLE"
}
wait_cluster_ok() { # every node: all slots served, and (sharded) leaders spread
  local t i ok masters
  for ((t = 0; t < 600; t++)); do
    ok=1
    for ((i = 1; i <= NODES; i++)); do
      redis-cli -h 127.0.0.1 -p $((CLIENT_BASE + i - 1)) CLUSTER INFO 2>/dev/null | grep -q 'cluster_state:ok' || ok=0
    done
    masters=$(redis-cli -h 127.0.0.1 -p "$CLIENT_BASE" CLUSTER NODES 2>/dev/null | awk 'NF > 8' | wc -l)
    ((ok == 1 && ($1 == 1 || masters == NODES))) && return 0
    sleep 0.1
  done
  die "the $1-shard cluster did not serve every slot with spread leaders within 60 s"
}
SHARD_TABLE="$TMP/raw/shards.md"
: >"$SHARD_TABLE"
if ((SHARDS > 1)); then
  for workload in set get; do
    for pipeline in 1 "$PIPELINE"; do cluster_run 1 "$workload" "$pipeline"; done
  done
  log "restarting the cluster with --shards $SHARDS"
  stop_pid "$DC_PID" "seshat dev-cluster" 20
  wait "$DC_PID" 2>/dev/null || true
  mv "$TMP/cluster" "$TMP/cluster-1shard"
  "$TMP/seshat" dev-cluster --nodes "$NODES" --dir "$TMP/cluster" --shards "$SHARDS" \
    --client-port-base "$CLIENT_BASE" --raft-port-base "$RAFT_BASE" \
    --http-port-base "$HTTP_BASE" </dev/null >>"$TMP/dev-cluster.log" 2>&1 &
  DC_PID=$!
  wait_cluster_ok "$SHARDS"
  for workload in set get; do
    for pipeline in 1 "$PIPELINE"; do cluster_run "$SHARDS" "$workload" "$pipeline"; done
  done
fi
BENCH_SECS=$(($(date +%s) - BENCH_START))

LEADER_NOTE=""
[ "$LEADER_AFTER" = "$LEADER" ] || LEADER_NOTE=" **Warning: the Seshat leader changed during the run (node $LEADER → node ${LEADER_AFTER:-none}).**"

# --- report ------------------------------------------------------------------
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
fstype=$(df --output=fstype "$TMP" 2>/dev/null | tail -n 1)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit+=" (with uncommitted changes)"
if [ -n "${SESHAT_BIN:-}" ]; then
  binary="Seshat binary SESHAT_BIN=$SESHAT_BIN (checkout at $commit)"
else
  binary="Seshat built from $commit"
fi
redis_version=$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')

echo
echo "redis-benchmark: $REQUESTS requests per run, $CLIENTS clients, ${VALUE_BYTES}-byte values," \
  "keys random in 0..$((KEYSPACE - 1)); SET runs first, then GET, INCR, MSET (10 keys each), HSET, LPUSH, ZADD. Latencies in ms."
echo "Seshat: $NODES nodes (dev-cluster), benchmark against the leader (node $LEADER); redis-server $redis_version," \
  "AOF on, RDB off. Keys after the SET runs: ${KEYS%, }.$LEADER_NOTE"
echo
python3 scripts/bench_parse.py table "$MANIFEST"
echo
if [ "$TLS" = 1 ]; then
  echo "TLS: the same nodes' TLS port (rustls, TLS 1.3, ECDSA P-256; redis-benchmark --tls, one handshake per client)."
  echo
  python3 scripts/bench_parse.py tls "$MANIFEST"
  echo
fi
echo "Offered load (seshat-loadgen, open loop: $CLIENTS connections, requests due at a fixed rate, latency from when each was due; ${RATE_SECS}s per rate; '–' = not run, the rate below already saturated):"
echo
python3 scripts/bench_parse.py rates "$RATE_TABLE"
echo
if [ -s "$SHARD_TABLE" ]; then
  echo "Shards: redis-benchmark (same -n/-c/-d/-r) against the leader of the 3 nodes with 1 data group, then with --cluster against them with $SHARDS (leaders spread, one per node);" \
    "CPU = the three nodes' user+system time over the run divided by its requests."
  echo
  echo "| shards | workload | -P | ops/s | p50 ms | p99 ms | CPU µs/request |"
  echo "|---:|---|---:|---:|---:|---:|---:|"
  cat "$SHARD_TABLE"
  echo
fi
for workload in set get; do
  for pipeline in 1 "$PIPELINE"; do
    python3 scripts/bench_parse.py stages "$TMP/raw" "seshat-$workload-P$pipeline" "$LEADER" "$NODES" "$REQUESTS" ||
      log "warning: no stage breakdown for $workload -P $pipeline"
    echo
  done
done
echo "Machine: nproc $(nproc), $cpu, Linux $(uname -r), data on $fstype; load average at start $LOAD_AT_START." \
  "Date: $(date -u '+%Y-%m-%d %H:%M UTC'). $binary. Benchmark runs took ${BENCH_SECS}s."
