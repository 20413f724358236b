//! Request counters and latency histograms, rendered with the node's Raft
//! and storage figures in Prometheus text format by [`crate::http`].

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram buckets, in seconds.
pub const LATENCY_BUCKETS_SECONDS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// The label of requests that name no known command.
pub const OTHER_COMMAND: &str = "other";

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

/// Per-command counters and histograms, one per declared command (the
/// labels come from the command table) plus [`OTHER_COMMAND`].
pub struct RequestMetrics {
    names: Vec<&'static str>,
    index: HashMap<&'static str, usize>,
    commands: Vec<CommandMetrics>,
    in_flight: AtomicU64,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        let names: Vec<&'static str> = seshat_commands::all_with_subcommands()
            .map(|d| d.name)
            .chain(std::iter::once(OTHER_COMMAND))
            .collect();
        let index = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let commands = names.iter().map(|_| CommandMetrics::default()).collect();
        Self {
            names,
            index,
            commands,
            in_flight: AtomicU64::new(0),
        }
    }
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
        let i = self
            .index
            .get(command)
            .or_else(|| self.index.get(OTHER_COMMAND))
            .copied()
            .unwrap_or(0);
        let Some(m) = self.commands.get(i) else {
            return;
        };
        if ok {
            m.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            m.error.fetch_add(1, Ordering::Relaxed);
        }
        m.latency.observe(took);
    }

    /// Commands that have been called at least once, with their metrics
    /// (series of commands never called are left out, as Redis leaves
    /// them out of `INFO commandstats`).
    fn called(&self) -> impl Iterator<Item = (&&'static str, &CommandMetrics)> {
        self.names
            .iter()
            .zip(self.commands.iter())
            .filter(|(_, m)| m.latency.count.load(Ordering::Relaxed) > 0)
    }

    /// Appends the request metrics in Prometheus text format.
    pub fn render(&self, node_id: u64, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP requests_total Client commands processed, by command and status."
        );
        let _ = writeln!(out, "# TYPE requests_total counter");
        for (name, m) in self.called() {
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
        for (name, m) in self.called() {
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
            !out.contains("command=\"set\""),
            "never-called commands are left out"
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
