//! Request counters and latency histograms, rendered with the node's Raft
//! and storage figures in Prometheus text format by [`crate::http`].

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram buckets, in seconds.
pub const LATENCY_BUCKETS_SECONDS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// Commands counted by name; everything else is counted as `other`.
pub const COUNTED_COMMANDS: [&str; 8] = [
    "get", "set", "del", "exists", "ping", "flushall", "info", "other",
];

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_SECONDS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS_SECONDS.iter().zip(self.buckets.iter()) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

#[derive(Default)]
struct CommandMetrics {
    ok: AtomicU64,
    error: AtomicU64,
    latency: Histogram,
}

/// Per-command counters and histograms.
#[derive(Default)]
pub struct RequestMetrics {
    commands: [CommandMetrics; COUNTED_COMMANDS.len()],
    in_flight: AtomicU64,
}

fn index_of(name: &str) -> usize {
    COUNTED_COMMANDS
        .iter()
        .position(|c| *c == name)
        .unwrap_or(COUNTED_COMMANDS.len() - 1)
}

/// Marks a request in flight until dropped.
pub struct InFlight<'a>(&'a RequestMetrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RequestMetrics {
    /// Counts a request as in flight until the guard drops.
    pub fn start(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Records one finished request.
    pub fn record(&self, command: &str, ok: bool, took: Duration) {
        let m = &self.commands[index_of(command)];
        if ok {
            m.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            m.error.fetch_add(1, Ordering::Relaxed);
        }
        m.latency.observe(took);
    }

    /// Appends the request metrics in Prometheus text format.
    pub fn render(&self, node_id: u64, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP requests_total Client commands processed, by command and status."
        );
        let _ = writeln!(out, "# TYPE requests_total counter");
        for (name, m) in COUNTED_COMMANDS.iter().zip(self.commands.iter()) {
            for (status, v) in [("ok", &m.ok), ("error", &m.error)] {
                let _ = writeln!(
                    out,
                    "requests_total{{node_id=\"{node_id}\",command=\"{name}\",status=\"{status}\"}} {}",
                    v.load(Ordering::Relaxed)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP request_duration_seconds Time from a command's arrival to its reply."
        );
        let _ = writeln!(out, "# TYPE request_duration_seconds histogram");
        for (name, m) in COUNTED_COMMANDS.iter().zip(self.commands.iter()) {
            let labels = format!("node_id=\"{node_id}\",command=\"{name}\"");
            for (bound, bucket) in LATENCY_BUCKETS_SECONDS.iter().zip(m.latency.buckets.iter()) {
                let _ = writeln!(
                    out,
                    "request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {}",
                    bucket.load(Ordering::Relaxed)
                );
            }
            let count = m.latency.count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
            );
            let sum = m.latency.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "request_duration_seconds_sum{{{labels}}} {sum}");
            let _ = writeln!(out, "request_duration_seconds_count{{{labels}}} {count}");
        }
        let _ = writeln!(
            out,
            "# HELP requests_in_flight Client commands being processed now."
        );
        let _ = writeln!(out, "# TYPE requests_in_flight gauge");
        let _ = writeln!(
            out,
            "requests_in_flight{{node_id=\"{node_id}\"}} {}",
            self.in_flight.load(Ordering::Relaxed)
        );
    }
}

/// Renders the per-stage time totals ([`seshat_common::stages`]) as a
/// Prometheus summary without quantiles.
pub fn render_stages(node_id: u64, out: &mut String) {
    use seshat_common::stages::{self, Stage};
    let _ = writeln!(
        out,
        "# HELP stage_seconds Time spent in each stage of the request path (see docs/architecture.md)."
    );
    let _ = writeln!(out, "# TYPE stage_seconds summary");
    for stage in Stage::ALL {
        let (count, nanos) = stages::totals(stage);
        let labels = format!("node_id=\"{node_id}\",stage=\"{}\"", stage.name());
        let _ = writeln!(out, "stage_seconds_sum{{{labels}}} {}", nanos as f64 / 1e9);
        let _ = writeln!(out, "stage_seconds_count{{{labels}}} {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_unknown_commands_count_as_other() {
        let m = RequestMetrics::default();
        m.record("get", true, Duration::from_micros(300));
        m.record("get", false, Duration::from_millis(20));
        m.record("frobnicate", true, Duration::from_millis(1));
        let mut out = String::new();
        m.render(1, &mut out);
        assert!(
            out.contains("requests_total{node_id=\"1\",command=\"get\",status=\"ok\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("requests_total{node_id=\"1\",command=\"get\",status=\"error\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("requests_total{node_id=\"1\",command=\"other\",status=\"ok\"} 1"),
            "{out}"
        );
        assert!(
            out.contains(
                "request_duration_seconds_bucket{node_id=\"1\",command=\"get\",le=\"0.0005\"} 1"
            ),
            "{out}"
        );
        assert!(
            out.contains(
                "request_duration_seconds_bucket{node_id=\"1\",command=\"get\",le=\"0.025\"} 2"
            ),
            "{out}"
        );
        assert!(
            out.contains("request_duration_seconds_count{node_id=\"1\",command=\"get\"} 2"),
            "{out}"
        );
    }
}
