//! `seshat-loadgen`: offers a RESP server a fixed rate of requests (open
//! loop) and reports the latency distribution, the way MemoryDB and others
//! report latency at a given load.
//!
//! A closed-loop benchmark (`redis-benchmark`: 50 clients, each waiting for
//! its reply before sending again) slows its own sending when the server
//! slows, so its latency figures hide queueing. Here request *i* is due at
//! `start + i / rate` whatever the replies do; it is sent on one of the
//! connections (round robin, pipelined behind that connection's earlier
//! requests), and its latency is measured from when it was *due* to when
//! its reply arrived — a late send counts against the server, so there is
//! no coordinated omission.
//!
//! Output: one `key=value` line on stdout (see [`Report`]); a run the
//! server cannot keep up with says `saturated=1`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{BufMut, BytesMut};
use clap::Parser;
use seshat_protocol_resp::{decode_frame, DecodeLimits, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Open-loop load generator for RESP servers.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Server host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Server port.
    #[arg(long, default_value_t = 6379)]
    port: u16,
    /// Requests per second offered.
    #[arg(long)]
    rate: u64,
    /// Seconds of measured load (after the warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// Connections the requests are spread over.
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// `set` or `get`.
    #[arg(long, default_value = "set")]
    command: Workload,
    /// Keys are `key:<n>` for n below this.
    #[arg(long, default_value_t = 100_000)]
    keyspace: u64,
    /// Value size of `set`, bytes.
    #[arg(long, default_value_t = 64)]
    value_bytes: usize,
    /// Requests outstanding (sent, unanswered) at which the run stops and
    /// reports saturation.
    #[arg(long, default_value_t = 100_000)]
    max_outstanding: usize,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Workload {
    Set,
    Get,
}

/// What one run measured.
#[derive(Debug, Default)]
struct Report {
    offered: u64,
    achieved: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    errors: u64,
    saturated: bool,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "offered={} achieved={:.0} p50_ms={:.3} p99_ms={:.3} p999_ms={:.3} max_ms={:.3} errors={} saturated={}",
            self.offered,
            self.achieved,
            self.p50_ms,
            self.p99_ms,
            self.p999_ms,
            self.max_ms,
            self.errors,
            u8::from(self.saturated)
        )
    }
}

/// One request's due time; its reply's arrival is the other end.
struct Due {
    at: Instant,
    measured: bool,
}

/// What a connection's reader collected.
#[derive(Default)]
struct Collected {
    latencies_us: Vec<u64>,
    errors: u64,
    answered_in_window: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.rate == 0 || args.connections == 0 || args.duration == 0 {
        bail!("--rate, --connections and --duration must be at least 1");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(run(args))?;
    println!("{report}");
    Ok(())
}

async fn run(args: Args) -> anyhow::Result<Report> {
    let args = Arc::new(args);
    let outstanding = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let warmup = Duration::from_secs(args.warmup);
    let window = Duration::from_secs(args.duration);
    let start = Instant::now() + Duration::from_millis(200);
    let window_start = start + warmup;
    let window_end = window_start + window;

    let mut senders = Vec::with_capacity(args.connections);
    let mut readers = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let stream = TcpStream::connect((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("cannot connect to {}:{}", args.host, args.port))?;
        stream.set_nodelay(true)?;
        let (mut rd, mut wr) = stream.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel::<(Due, BytesMut)>();
        let (due_tx, mut due_rx) = mpsc::unbounded_channel::<Due>();
        senders.push(tx);
        // Writer: sends each request as soon as it is handed over; at the
        // end it half-closes, so the server answers what it has and closes
        // and the reader sees the end.
        tokio::spawn(async move {
            while let Some((due, request)) = rx.recv().await {
                if due_tx.send(due).is_err() || wr.write_all(&request).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        });
        // Reader: matches replies to due times, in order.
        let outstanding = outstanding.clone();
        readers.push(tokio::spawn(async move {
            let mut collected = Collected::default();
            let mut buf = BytesMut::with_capacity(64 * 1024);
            let mut waiting: VecDeque<Due> = VecDeque::new();
            let limits = DecodeLimits::default();
            loop {
                while let Ok(due) = due_rx.try_recv() {
                    waiting.push_back(due);
                }
                let (frame, used) = match decode_frame(&buf, &limits) {
                    Ok(Some(decoded)) => decoded,
                    Ok(None) => {
                        if rd.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                            break;
                        }
                        continue;
                    }
                    Err(_) => break,
                };
                let _ = buf.split_to(used);
                let now = Instant::now();
                let due = match waiting.pop_front() {
                    Some(d) => d,
                    None => match due_rx.recv().await {
                        Some(d) => d,
                        None => break,
                    },
                };
                outstanding.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                if matches!(frame, Frame::Error(_)) {
                    collected.errors += 1;
                }
                if due.measured {
                    let us = now.saturating_duration_since(due.at).as_micros();
                    collected
                        .latencies_us
                        .push(u64::try_from(us).unwrap_or(u64::MAX));
                    if now <= window_end {
                        collected.answered_in_window += 1;
                    }
                }
            }
            collected
        }));
    }

    // The schedule: request i is due at start + i / rate.
    let total = args.rate * (args.warmup + args.duration);
    let mut saturated = false;
    let mut value = BytesMut::new();
    value.put_bytes(b'x', args.value_bytes);
    tokio::time::sleep_until(start).await;
    let mut i: u64 = 0;
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
    while i < total {
        let now = Instant::now();
        // Everything due by now goes out now.
        while i < total {
            let at = start + Duration::from_nanos(i * 1_000_000_000 / args.rate);
            if at > now {
                break;
            }
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let key = format!("key:{}", rng % args.keyspace);
            let request = encode(args.command, &key, &value);
            let due = Due {
                at,
                measured: at >= window_start,
            };
            let n = outstanding.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if n >= args.max_outstanding {
                // Not sent: take it back, so the drain below ends.
                outstanding.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                saturated = true;
                break;
            }
            let conn = usize::try_from(i).unwrap_or(0) % senders.len();
            if senders[conn].send((due, request)).is_err() {
                bail!("connection {conn} closed by the server");
            }
            i += 1;
        }
        if saturated {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Let the last replies arrive (bounded), then stop.
    let drain_until = Instant::now() + Duration::from_secs(10);
    while outstanding.load(std::sync::atomic::Ordering::Relaxed) > 0 && Instant::now() < drain_until
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    saturated |= outstanding.load(std::sync::atomic::Ordering::Relaxed) > 0;
    drop(senders);
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut answered = 0;
    for r in readers {
        if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_secs(10), r).await {
            latencies.extend(c.latencies_us);
            errors += c.errors;
            answered += c.answered_in_window;
        }
    }
    Ok(summarise(&args, latencies, errors, answered, saturated))
}

fn summarise(args: &Args, mut us: Vec<u64>, errors: u64, answered: u64, saturated: bool) -> Report {
    us.sort_unstable();
    let pct = |p: f64| -> f64 {
        if us.is_empty() {
            return f64::NAN;
        }
        let idx = ((us.len() as f64 * p).ceil() as usize).clamp(1, us.len()) - 1;
        us[idx] as f64 / 1000.0
    };
    Report {
        offered: args.rate,
        achieved: answered as f64 / args.duration as f64,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        p999_ms: pct(0.999),
        max_ms: us.last().map_or(f64::NAN, |m| *m as f64 / 1000.0),
        errors,
        saturated,
    }
}

fn encode(workload: Workload, key: &str, value: &[u8]) -> BytesMut {
    let args: &[&[u8]] = match workload {
        Workload::Set => &[b"SET", key.as_bytes(), value],
        Workload::Get => &[b"GET", key.as_bytes()],
    };
    let mut out = BytesMut::with_capacity(64 + value.len());
    out.put_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.put_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.put_slice(arg);
        out.put_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(rate: u64, duration: u64) -> Args {
        Args::parse_from([
            "seshat-loadgen",
            "--rate",
            &rate.to_string(),
            "--duration",
            &duration.to_string(),
        ])
    }

    #[test]
    fn requests_are_valid_resp_commands() {
        let set = encode(Workload::Set, "key:7", b"vv");
        assert_eq!(&set[..], b"*3\r\n$3\r\nSET\r\n$5\r\nkey:7\r\n$2\r\nvv\r\n");
        let get = encode(Workload::Get, "key:7", b"ignored");
        assert_eq!(&get[..], b"*2\r\n$3\r\nGET\r\n$5\r\nkey:7\r\n");
    }

    #[test]
    fn percentiles_and_throughput_come_from_the_samples() {
        // 1..=1000 µs: p50 = 0.5 ms, p99 = 0.99 ms, p99.9 = 0.999 ms.
        let samples: Vec<u64> = (1..=1000).rev().collect();
        let r = summarise(&args(500, 2), samples, 3, 1000, false);
        assert_eq!(r.offered, 500);
        assert!((r.achieved - 500.0).abs() < f64::EPSILON);
        assert!((r.p50_ms - 0.5).abs() < 1e-9);
        assert!((r.p99_ms - 0.99).abs() < 1e-9);
        assert!((r.p999_ms - 0.999).abs() < 1e-9);
        assert!((r.max_ms - 1.0).abs() < 1e-9);
        assert_eq!(r.errors, 3);
        let line = r.to_string();
        assert!(
            line.starts_with("offered=500 achieved=500 p50_ms=0.500"),
            "{line}"
        );
        assert!(line.ends_with("errors=3 saturated=0"), "{line}");
    }

    #[test]
    fn no_samples_report_nan_not_a_panic() {
        let r = summarise(&args(10, 1), Vec::new(), 0, 0, true);
        assert!(r.p50_ms.is_nan());
        assert!(r.to_string().ends_with("saturated=1"));
    }
}
