#!/usr/bin/env python3
"""Parses redis-benchmark (7.x, non-quiet) output for scripts/bench.sh.

  bench_parse.py one FILE        prints "ops_per_s p50 p99 p99.9 errors"
  bench_parse.py table MANIFEST  prints the markdown comparison table
  bench_parse.py tls MANIFEST    prints Seshat over TLS against over TCP
  bench_parse.py scrape URL OUT  saves a node's /metrics text to OUT
  bench_parse.py stages DIR RUN LEADER NODES REQUESTS
                                 prints where one request of RUN spent its
                                 time, from the stage_seconds metrics saved
                                 in DIR/RUN-{before,after}-node<i>.metrics
  bench_parse.py rates FILE      prints the offered-load table from the
                                 seshat-loadgen lines bench.sh saved

MANIFEST has one tab-separated line per run: target workload pipeline file,
where target is seshat, seshat-tls, redis-always or redis-everysec.

Numbers come from redis-benchmark itself: ops/s from "throughput summary",
p50 and p99 from the "latency summary" line, p99.9 from the "Latency by
percentile distribution" section (the first line at or above 99.9 %).
Latencies are in milliseconds. "errors" counts "Error from server" lines,
which redis-benchmark prints (at most one per second) when run with -e.
"""
import re
import sys


def parse(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    # Progress lines end in \r; keep only whole lines.
    lines = [l.strip() for l in re.split(r"[\r\n]+", text)]
    rps = p50 = p99 = p999 = None
    errors = [l for l in lines if l.startswith("Error from server")]
    in_pct = False
    for i, l in enumerate(lines):
        if l.startswith("Latency by percentile distribution"):
            in_pct = True
            continue
        if in_pct:
            m = re.match(r"([\d.]+)% <= ([\d.]+) milliseconds", l)
            if m:
                if p999 is None and float(m.group(1)) >= 99.9:
                    p999 = float(m.group(2))
            elif l:
                in_pct = False
        m = re.match(r"throughput summary: ([\d.]+) requests per second", l)
        if m:
            rps = float(m.group(1))
        if l.startswith("avg") and "p50" in l and i + 1 < len(lines):
            names = l.split()
            values = lines[i + 1].split()
            if len(values) == len(names):
                row = dict(zip(names, values))
                p50 = float(row["p50"])
                p99 = float(row["p99"])
    if rps is None or p50 is None or p99 is None or p999 is None:
        raise SystemExit(f"bench_parse: cannot parse {path} (no summary; did redis-benchmark fail?)")
    return rps, p50, p99, p999, errors


def fmt_ops(x):
    return "–" if x is None else f"{x:,.0f}"


def fmt_ms(x):
    return "–" if x is None else f"{x:.3f}"


def fmt_ratio(a, b):
    return "–" if a is None or not b else f"{a / b:.2f}"


def table(manifest):
    results = {}
    order = []
    error_lines = []
    with open(manifest, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            target, workload, pipeline, path = line.rstrip("\n").split("\t")
            r = parse(path)
            results[(target, workload, pipeline)] = r
            if (workload, pipeline) not in order:
                order.append((workload, pipeline))
            for e in r[4]:
                error_lines.append(f"{target} {workload} -P {pipeline}: {e}")
    out = [
        "| workload | Seshat ops/s | p50 ms | p99 ms | p99.9 ms "
        "| redis always ops/s | p50 ms | p99 ms | p99.9 ms "
        "| redis everysec ops/s | Seshat / always | Seshat / everysec |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    none = (None, None, None, None, [])
    for workload, pipeline in order:
        s = results.get(("seshat", workload, pipeline), none)
        a = results.get(("redis-always", workload, pipeline), none)
        e = results.get(("redis-everysec", workload, pipeline), none)
        label = f"{workload}" + ("" if pipeline == "1" else f" -P {pipeline}")
        out.append(
            f"| {label} | {fmt_ops(s[0])} | {fmt_ms(s[1])} | {fmt_ms(s[2])} | {fmt_ms(s[3])} "
            f"| {fmt_ops(a[0])} | {fmt_ms(a[1])} | {fmt_ms(a[2])} | {fmt_ms(a[3])} "
            f"| {fmt_ops(e[0])} | {fmt_ratio(s[0], a[0])} | {fmt_ratio(s[0], e[0])} |"
        )
    print("\n".join(out))
    if error_lines:
        print()
        print(f"Error replies seen ({len(error_lines)} lines shown by redis-benchmark -e, at most one per second per run):")
        for e in error_lines:
            print(f"    {e}")
    else:
        print()
        print("No error replies (redis-benchmark -e printed none).")


def tls(manifest):
    """Seshat over TLS against Seshat over TCP, same workloads and nodes."""
    results = {}
    order = []
    with open(manifest, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            target, workload, pipeline, path = line.rstrip("\n").split("\t")
            if target not in ("seshat", "seshat-tls"):
                continue
            results[(target, workload, pipeline)] = parse(path)
            if target == "seshat-tls" and (workload, pipeline) not in order:
                order.append((workload, pipeline))
    out = [
        "| workload | TCP ops/s | TLS ops/s | TLS / TCP ops/s | TCP p50 ms | TLS p50 ms | TCP p99 ms | TLS p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    none = (None, None, None, None, [])
    for workload, pipeline in order:
        p = results.get(("seshat", workload, pipeline), none)
        t = results.get(("seshat-tls", workload, pipeline), none)
        label = f"{workload}" + ("" if pipeline == "1" else f" -P {pipeline}")
        out.append(
            f"| {label} | {fmt_ops(p[0])} | {fmt_ops(t[0])} | {fmt_ratio(t[0], p[0])} "
            f"| {fmt_ms(p[1])} | {fmt_ms(t[1])} | {fmt_ms(p[2])} | {fmt_ms(t[2])} |"
        )
    print("\n".join(out))


STAGE_TEXT = {
    "dispatch": "parse the command (decode is in the criterion benches)",
    "propose_queue": "wait in the proposer queue (per write)",
    "propose_handoff": "hand one entry to Raft",
    "log_write": "write appended entries to RocksDB (no sync)",
    "log_sync": "one WAL fsync (group commit)",
    "log_durable": "append until its fsync completed",
    "replication_round_trip": "leader: append request until follower's reply (follower synced)",
    "apply": "apply committed entries, wake writers",
    "propose_to_applied": "entry handed to Raft until its result: append, sync, replicate, commit, apply",
    "read_confirm": "read waits for its ReadIndex round",
    "read_round": "one ReadIndex round (shared by waiting reads)",
    "reply": "write replies to the socket (per flush)",
}


def scrape(url, out):
    import urllib.request
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode("utf-8", "replace")
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)


def read_stages(path):
    """{stage: [count, seconds]} and (entries, writes) from a /metrics file."""
    stages = {}
    batching = [0.0, 0.0]
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r'stage_seconds_(sum|count)\{node_id="\d+",stage="([a-z_]+)"\} (\S+)', line)
            if m:
                s = stages.setdefault(m.group(2), [0.0, 0.0])
                s[0 if m.group(1) == "count" else 1] = float(m.group(3))
                continue
            m = re.match(r'proposed_(entries|writes)_total\{node_id="\d+"\} (\S+)', line)
            if m:
                batching[0 if m.group(1) == "entries" else 1] = float(m.group(2))
    return stages, batching


def stages_table(raw, run, leader, nodes, requests):
    leader, nodes, requests = int(leader), int(nodes), int(requests)
    deltas = {}
    batching = {}
    for i in range(1, nodes + 1):
        before, b0 = read_stages(f"{raw}/{run}-before-node{i}.metrics")
        after, b1 = read_stages(f"{raw}/{run}-after-node{i}.metrics")
        deltas[i] = {
            k: (after[k][0] - before.get(k, [0, 0])[0], after[k][1] - before.get(k, [0, 0])[1])
            for k in after
        }
        batching[i] = (b1[0] - b0[0], b1[1] - b0[1])
    followers = [i for i in range(1, nodes + 1) if i != leader]
    workload, _, pipeline = run.replace("seshat-", "").rpartition("-P")
    if pipeline != "1":
        workload += f" -P {pipeline}"
    entries, writes = batching[leader]
    print(f"Where a request's time went, {workload} on Seshat ({requests:,} requests; "
          f"from the nodes' stage_seconds metrics, before/after the run):")
    if entries:
        print(f"{writes:,.0f} writes went in {entries:,.0f} log entries "
              f"({writes / entries:.1f} writes per entry).")
    print()
    print("| stage | what | leader: runs | leader: mean µs | leader: µs per request "
          "| followers: runs | followers: mean µs |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for stage, text in STAGE_TEXT.items():
        lc, ls = deltas[leader].get(stage, (0, 0))
        fc = sum(deltas[f].get(stage, (0, 0))[0] for f in followers)
        fs = sum(deltas[f].get(stage, (0, 0))[1] for f in followers)
        if lc == 0 and fc == 0:
            continue
        lmean = f"{ls / lc * 1e6:,.1f}" if lc else "–"
        lper = f"{ls / requests * 1e6:,.2f}" if lc else "–"
        fmean = f"{fs / fc * 1e6:,.1f}" if fc else "–"
        print(f"| {stage} | {text} | {lc:,.0f} | {lmean} | {lper} | {fc / max(len(followers), 1):,.0f} | {fmean} |")


def rates(path):
    """The offered-load table from seshat-loadgen lines (workload, rate,
    target, line) written by bench.sh."""
    runs = {}
    order = []
    with open(path, encoding="utf-8") as f:
        for raw in f:
            workload, rate, target, line = raw.rstrip("\n").split("\t", 3)
            fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
            key = (workload, int(rate))
            if key not in runs:
                order.append(key)
                runs[key] = {}
            runs[key][target] = fields

    def cells(fields):
        if fields is None:
            return ["–"] * 5
        sat = " (saturated)" if fields.get("saturated") == "1" else ""
        return [
            f"{float(fields['achieved']):,.0f}{sat}",
            fields["p50_ms"],
            fields["p99_ms"],
            fields["p999_ms"],
            fields["errors"],
        ]

    print("| workload | offered ops/s | Seshat achieved | p50 ms | p99 ms | p99.9 ms | errors "
          "| redis always achieved | p50 ms | p99 ms | p99.9 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for workload, rate in sorted(order, key=lambda k: (k[0] != "set", k[1])):
        r = runs[(workload, rate)]
        row = [workload, f"{rate:,}"] + cells(r.get("seshat")) + cells(r.get("redis-always"))
        print("| " + " | ".join(row) + " |")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "one":
        rps, p50, p99, p999, errors = parse(sys.argv[2])
        print(f"{rps:.2f} {p50:.3f} {p99:.3f} {p999:.3f} {len(errors)}")
    elif len(sys.argv) == 3 and sys.argv[1] == "table":
        table(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "tls":
        tls(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "scrape":
        scrape(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "rates":
        rates(sys.argv[2])
    elif len(sys.argv) == 7 and sys.argv[1] == "stages":
        stages_table(*sys.argv[2:])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
