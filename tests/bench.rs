//! Benchmark figures: each bench prints its figures and, when
//! `NIXO_BENCH_FIGURES` names a file, appends them to it (one line each,
//! tab-separated) so `scripts/bench` can print every figure of one run in
//! one table against its goal (`nixo-bench-table`).

use std::io::Write;

/// The environment variable naming the file figures are appended to.
pub const FIGURES_ENV: &str = "NIXO_BENCH_FIGURES";

/// What a figure is measured against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// The figure meets its goal at or above this.
    AtLeast(f64),
    /// The figure meets its goal at or below this.
    AtMost(f64),
    /// Reported for context; no goal.
    None,
}

impl Goal {
    fn encode(self) -> (&'static str, f64) {
        match self {
            Goal::AtLeast(v) => (">=", v),
            Goal::AtMost(v) => ("<=", v),
            Goal::None => ("-", 0.0),
        }
    }

    fn decode(kind: &str, value: f64) -> Option<Goal> {
        match kind {
            ">=" => Some(Goal::AtLeast(value)),
            "<=" => Some(Goal::AtMost(value)),
            "-" => Some(Goal::None),
            _ => None,
        }
    }

    /// How far the figure is towards its goal (1.00 or more: met), or `None`
    /// without a goal.
    pub fn ratio(self, value: f64) -> Option<f64> {
        match self {
            Goal::AtLeast(goal) => Some(value / goal),
            Goal::AtMost(goal) if value > 0.0 => Some(goal / value),
            Goal::AtMost(_) => Some(f64::INFINITY),
            Goal::None => None,
        }
    }
}

/// One measured figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub goal: Goal,
}

impl Figure {
    fn line(&self) -> String {
        let (kind, goal) = self.goal.encode();
        let clean = |s: &str| s.replace(['\t', '\n'], " ");
        format!(
            "{}\t{}\t{}\t{kind}\t{goal}\n",
            clean(&self.name),
            self.value,
            clean(&self.unit)
        )
    }

    /// Parses one line written by [`figure`].
    pub fn parse(line: &str) -> Option<Figure> {
        let mut parts = line.trim_end_matches('\n').split('\t');
        let (name, value, unit, kind, goal) = (
            parts.next()?,
            parts.next()?.parse().ok()?,
            parts.next()?,
            parts.next()?,
            parts.next()?.parse().ok()?,
        );
        Some(Figure {
            name: name.to_string(),
            value,
            unit: unit.to_string(),
            goal: Goal::decode(kind, goal)?,
        })
    }
}

/// Prints a figure and appends it to the figures file, if one is named.
pub fn figure(name: &str, value: f64, unit: &str, goal: Goal) {
    let figure = Figure {
        name: name.to_string(),
        value,
        unit: unit.to_string(),
        goal,
    };
    println!("figure: {name} = {} {unit}", format_value(value));
    if let Ok(path) = std::env::var(FIGURES_ENV) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
        file.write_all(figure.line().as_bytes())
            .unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
    }
}

/// A figure as a person reads it: thousands grouped, two decimals below 100.
pub fn format_value(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    if value.abs() < 100.0 {
        return format!("{value:.2}");
    }
    let whole = format!("{:.0}", value.abs());
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if value < 0.0 { format!("-{grouped}") } else { grouped }
}

/// The table of `figures`: each figure, its goal, the ratio and pass/short.
/// Returns the table and how many figures fell short of their goal.
pub fn table(figures: &[Figure]) -> (String, usize) {
    let mut rows = vec![[
        "figure".to_string(),
        "measured".to_string(),
        "goal".to_string(),
        "ratio".to_string(),
        "".to_string(),
    ]];
    let mut short = 0;
    for f in figures {
        let (goal, ratio, verdict) = match f.goal.ratio(f.value) {
            None => ("-".to_string(), "-".to_string(), "info".to_string()),
            Some(ratio) => {
                let (op, goal) = f.goal.encode();
                let met = ratio >= 1.0;
                if !met {
                    short += 1;
                }
                (
                    format!("{op} {} {}", format_value(goal), f.unit),
                    format!("{ratio:.2}"),
                    if met { "pass" } else { "short" }.to_string(),
                )
            }
        };
        rows.push([
            f.name.clone(),
            format!("{} {}", format_value(f.value), f.unit),
            goal,
            ratio,
            verdict,
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, w))| {
                if c == 0 || c == 4 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 8));
            out.push('\n');
        }
    }
    (out, short)
}

/// A line of this process's `/proc/self/status` in KiB (`VmHWM:`, `VmRSS:`).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The process's peak resident memory so far (VmHWM), KiB.
pub fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

/// The process's resident memory now (VmRSS), KiB.
pub fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// Samples [`rss_kib`] every 20 ms until the returned guard is stopped;
/// [`RssSampler::stop`] answers the highest sample (KiB).
pub struct RssSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl RssSampler {
    pub fn start() -> RssSampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut max = rss_kib();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(20));
                max = max.max(rss_kib());
            }
            max
        });
        RssSampler { stop, thread }
    }

    pub fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

/// One keep-alive HTTP/1.1 connection of a load generator: hyper's
/// connection-level client (no pool, no redirects, no decompression), so a
/// request costs the sending process about what `wrk` costs: the bench's
/// load shares the server's two cores, and a heavier client would be
/// measured as the server's slowness.
pub struct LoadConnection {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    authority: String,
}

impl LoadConnection {
    /// Connects to `base` (`http://host:port`).
    pub async fn open(base: &str) -> LoadConnection {
        let authority = base.trim_start_matches("http://").trim_end_matches('/').to_string();
        let stream = tokio::net::TcpStream::connect(&authority)
            .await
            .expect("the server accepts connections");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        let (sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("an HTTP/1.1 connection");
        tokio::spawn(connection);
        LoadConnection { sender, authority }
    }

    /// Sends one request, reads its whole answer, and answers its status.
    pub async fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &'static str) -> u16 {
        use http_body_util::BodyExt;
        self.sender.ready().await.expect("the connection stays open");
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.authority.as_str());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(http_body_util::Full::new(bytes::Bytes::from_static(body.as_bytes())))
            .expect("a well-formed request");
        let response = self.sender.send_request(request).await.expect("the server answers");
        let status = response.status().as_u16();
        response.into_body().collect().await.expect("the whole answer");
        status
    }
}

/// Sum and count of every series of the histogram `name` in a Prometheus
/// text exposition, keyed by the series' labels (`{stage="edge.request"}`).
pub fn histogram_totals(text: &str, name: &str) -> std::collections::BTreeMap<String, (f64, f64)> {
    let mut totals = std::collections::BTreeMap::<String, (f64, f64)>::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (is_sum, rest) = match (rest.strip_prefix("_sum"), rest.strip_prefix("_count")) {
            (Some(rest), _) => (true, rest),
            (_, Some(rest)) => (false, rest),
            _ => continue,
        };
        let Some((labels, value)) = rest.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let entry = totals.entry(labels.to_string()).or_default();
        if is_sum {
            entry.0 = value;
        } else {
            entry.1 = value;
        }
    }
    totals
}

/// Mean seconds and count of each series of the histogram `name` between
/// two expositions, for the series that saw observations in between.
pub fn histogram_means(before: &str, after: &str, name: &str) -> Vec<(String, f64, f64)> {
    let before = histogram_totals(before, name);
    histogram_totals(after, name)
        .into_iter()
        .filter_map(|(labels, (sum, count))| {
            let (sum0, count0) = before.get(&labels).copied().unwrap_or_default();
            let n = count - count0;
            (n > 0.0).then(|| (labels, (sum - sum0) / n, n))
        })
        .collect()
}

/// How many observations of each series of the histogram `name` took
/// longer than `bound_s` between two expositions (`bound_s` must be one of
/// its bucket bounds), for the series that saw any in between: (labels,
/// over, count).
pub fn histogram_over(before: &str, after: &str, name: &str, bound_s: f64) -> Vec<(String, f64, f64)> {
    let within = |text: &str| {
        let mut within = std::collections::BTreeMap::<String, f64>::new();
        let prefix = format!("{name}_bucket{{");
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(&prefix) else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once(' ') else {
                continue;
            };
            let Some((labels, le)) = labels.trim_end_matches('}').rsplit_once("le=\"") else {
                continue;
            };
            let (Ok(le), Ok(value)) = (le.trim_end_matches('"').parse::<f64>(), value.parse::<f64>()) else {
                continue;
            };
            if (le - bound_s).abs() <= bound_s * 1e-9 {
                let labels = format!("{{{}}}", labels.trim_end_matches(','));
                within.insert(labels, value);
            }
        }
        within
    };
    let (within_before, within_after) = (within(before), within(after));
    let totals_before = histogram_totals(before, name);
    histogram_totals(after, name)
        .into_iter()
        .filter_map(|(labels, (_, count))| {
            let n = count - totals_before.get(&labels).map_or(0.0, |t| t.1);
            let inside = within_after.get(&labels)? - within_before.get(&labels).copied().unwrap_or(0.0);
            (n > 0.0).then_some((labels, n - inside, n))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_say_how_far_from_the_goal() {
        assert_eq!(Goal::AtLeast(5000.0).ratio(2500.0), Some(0.5));
        assert_eq!(Goal::AtMost(150.0).ratio(300.0), Some(0.5));
        assert_eq!(Goal::AtMost(10.0).ratio(5.0), Some(2.0));
        assert_eq!(Goal::None.ratio(1.0), None);
    }

    #[test]
    fn lines_round_trip_and_the_table_counts_shortfalls() {
        let figures = [
            Figure {
                name: "edge overhead p50".into(),
                value: 312.5,
                unit: "µs".into(),
                goal: Goal::AtMost(150.0),
            },
            Figure {
                name: "no decay".into(),
                value: 0.97,
                unit: "x".into(),
                goal: Goal::AtLeast(0.9),
            },
            Figure {
                name: "rss".into(),
                value: 1234567.0,
                unit: "B".into(),
                goal: Goal::None,
            },
        ];
        let parsed: Vec<Figure> = figures.iter().map(|f| Figure::parse(&f.line()).unwrap()).collect();
        assert_eq!(parsed, figures);
        let (text, short) = table(&parsed);
        assert_eq!(short, 1);
        assert!(text.contains("312 µs"), "{text}");
        assert!(text.contains("1,234,567 B"), "{text}");
        assert!(text.lines().nth(2).unwrap().ends_with("short"), "{text}");
        assert!(text.lines().nth(3).unwrap().ends_with("pass"), "{text}");
        assert!(text.lines().nth(4).unwrap().ends_with("info"), "{text}");
        assert_eq!(format_value(5000.0), "5,000");
        assert_eq!(format_value(-1234.0), "-1,234");
    }

    #[test]
    fn histogram_over_counts_what_took_longer_than_a_bound() {
        let before = "h_bucket{stage=\"a\",le=\"0.005\"} 2\nh_bucket{stage=\"a\",le=\"+Inf\"} 3\nh_sum{stage=\"a\"} 1\nh_count{stage=\"a\"} 3\n";
        let after = "h_bucket{stage=\"a\",le=\"0.001\"} 4\nh_bucket{stage=\"a\",le=\"0.005\"} 9\nh_bucket{stage=\"a\",le=\"+Inf\"} 13\nh_sum{stage=\"a\"} 2\nh_count{stage=\"a\"} 13\nh_bucket{stage=\"b\",le=\"0.005\"} 1\nh_sum{stage=\"b\"} 0\nh_count{stage=\"b\"} 1\n";
        let over = histogram_over(before, after, "h", 0.005);
        // a: 10 new, 7 of them within 5 ms; b: 1 new, within.
        assert_eq!(
            over,
            vec![
                ("{stage=\"a\"}".to_string(), 3.0, 10.0),
                ("{stage=\"b\"}".to_string(), 0.0, 1.0)
            ]
        );
    }

    #[test]
    fn histogram_means_between_two_scrapes() {
        let before = "# TYPE h histogram\nh_bucket{stage=\"a\",le=\"1\"} 2\nh_sum{stage=\"a\"} 0.5\nh_count{stage=\"a\"} 2\nh_sum{stage=\"b\"} 1\nh_count{stage=\"b\"} 1\nhh_sum 9\n";
        let after = "h_sum{stage=\"a\"} 1.5\nh_count{stage=\"a\"} 6\nh_sum{stage=\"b\"} 1\nh_count{stage=\"b\"} 1\nh_sum{stage=\"c\"} 0.3\nh_count{stage=\"c\"} 3\n";
        let means = histogram_means(before, after, "h");
        assert_eq!(means.len(), 2, "{means:?}");
        assert_eq!(means[0].0, "{stage=\"a\"}");
        assert!((means[0].1 - 0.25).abs() < 1e-12 && means[0].2 == 4.0, "{means:?}");
        assert!((means[1].1 - 0.1).abs() < 1e-12 && means[1].2 == 3.0, "{means:?}");
    }
}
