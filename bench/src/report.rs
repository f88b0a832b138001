//! Statistics over rounds, the Markdown table and the SVG chart.

use std::fmt::Write as _;

use crate::benches::{Bench, Kind};

/// The ratio goal of issue 3: aioloop at least 5% ahead of the best peer.
pub const GOAL: f64 = 1.05;

/// One child's result.
#[derive(Debug, Clone)]
pub struct Sample {
    /// ns/op or bytes/item.
    pub value: f64,
    /// Peak RSS of the child, KiB.
    pub peak_rss_kb: u64,
}

/// Every sample of one benchmark: `samples[runtime][round]`.
#[derive(Debug, Clone)]
pub struct BenchSamples {
    /// The benchmark.
    pub bench: &'static Bench,
    /// Runtime names, in column order (aioloop first when selected).
    pub runtimes: Vec<&'static str>,
    /// `samples[i][round]`, `None` when that child failed.
    pub samples: Vec<Vec<Option<Sample>>>,
}

/// Median, min and max of a set of ratios (one per round).
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// `None` for an empty set.
    pub fn of(values: &[f64]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        Some(Spread {
            median: median_sorted(&v),
            min: v[0],
            max: v[v.len() - 1],
        })
    }
}

fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// What one table row says.
#[derive(Debug, Clone)]
pub struct Row {
    /// The benchmark.
    pub bench: &'static Bench,
    /// `(runtime, median value, median peak RSS KiB)` per runtime.
    pub medians: Vec<(&'static str, Option<f64>, Option<f64>)>,
    /// `(peer, peer/aioloop per round)` per peer.
    pub ratios: Vec<(&'static str, Option<Spread>)>,
    /// The peer with the lowest median value, and aioloop's ratio to it.
    pub best: Option<(&'static str, Spread)>,
}

impl BenchSamples {
    /// Medians and per-round ratios.
    pub fn row(&self) -> Row {
        let medians = self
            .runtimes
            .iter()
            .zip(&self.samples)
            .map(|(&rt, s)| {
                let vals: Vec<f64> = s.iter().flatten().map(|x| x.value).collect();
                let rss: Vec<f64> = s.iter().flatten().map(|x| x.peak_rss_kb as f64).collect();
                (
                    rt,
                    Spread::of(&vals).map(|s| s.median),
                    Spread::of(&rss).map(|s| s.median),
                )
            })
            .collect::<Vec<_>>();
        let base = self.runtimes.iter().position(|&r| r == "aioloop");
        let mut ratios = Vec::new();
        if let Some(base) = base {
            for (i, &rt) in self.runtimes.iter().enumerate() {
                if i == base {
                    continue;
                }
                let per_round: Vec<f64> = self.samples[i]
                    .iter()
                    .zip(&self.samples[base])
                    .filter_map(|(p, a)| match (p, a) {
                        (Some(p), Some(a)) if a.value > 0.0 => Some(p.value / a.value),
                        _ => None,
                    })
                    .collect();
                ratios.push((rt, Spread::of(&per_round)));
            }
        }
        let best = ratios
            .iter()
            .filter_map(|&(rt, spread)| {
                let median = medians.iter().find(|m| m.0 == rt)?.1?;
                Some((rt, spread?, median))
            })
            .min_by(|a, b| a.2.total_cmp(&b.2))
            .map(|(rt, spread, _)| (rt, spread));
        Row {
            bench: self.bench,
            medians,
            ratios,
            best,
        }
    }
}

fn fmt_value(v: Option<f64>) -> String {
    match v {
        None => "–".to_string(),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// A ratio with 2 decimals, or 3 where 2 would round it across parity or
/// the goal (1.047 must not read as 1.05).
pub fn fmt_ratio(x: f64) -> String {
    let two = format!("{x:.2}");
    let shown: f64 = two.parse().unwrap_or(x);
    if (x < GOAL && shown >= GOAL) || (x < 1.0 && shown >= 1.0) || (x >= 1.0 && shown < 1.0) {
        format!("{x:.3}")
    } else {
        two
    }
}

fn fmt_spread(s: Option<Spread>) -> String {
    match s {
        None => "–".to_string(),
        Some(s) => format!(
            "{} [{}–{}]",
            fmt_ratio(s.median),
            fmt_ratio(s.min),
            fmt_ratio(s.max)
        ),
    }
}

/// Facts printed above the table.
#[derive(Debug, Clone)]
pub struct Header {
    /// UTC date and time.
    pub date: String,
    /// CPU model, nproc, kernel.
    pub machine: String,
    /// rustc version.
    pub rustc: String,
    /// How the run was made.
    pub command: String,
    /// Rounds and pinning.
    pub method: String,
    /// aioloop's revision and the peers' crate versions.
    pub versions: String,
}

/// The results as Markdown: header, the ratio table, the memory table, notes.
pub fn markdown(
    h: &Header,
    rows: &[Row],
    runtimes: &[(&str, &str)],
    charts: Option<&str>,
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# aioloop vs its peers: latest results\n");
    let _ = writeln!(md, "- Date: {}", h.date);
    let _ = writeln!(md, "- Machine: {}", h.machine);
    let _ = writeln!(md, "- Toolchain: {}", h.rustc);
    let _ = writeln!(md, "- Versions: {}", h.versions);
    let _ = writeln!(md, "- Command: `{}`", h.command);
    let _ = writeln!(md, "- Method: {}\n", h.method);
    let _ = writeln!(
        md,
        "Ratios are peer / aioloop per round (time per op, or bytes per item), \
         median [min–max] across rounds: **above 1 means aioloop is faster \
         (or smaller)**. The goal (issue 3) is a median of at least {GOAL} against \
         the best peer on every row.\n"
    );
    md.push_str(&table(rows));
    let mem: Vec<&Row> = rows
        .iter()
        .filter(|r| r.bench.kind == Kind::Memory)
        .collect();
    if !mem.is_empty() {
        let _ = writeln!(
            md,
            "\nPeak RSS of the memory benchmarks' processes (VmHWM, median, MiB):\n"
        );
        let names: Vec<&str> = mem[0].medians.iter().map(|m| m.0).collect();
        let _ = writeln!(md, "| benchmark | {} |", names.join(" | "));
        let _ = writeln!(md, "|---|{}", "---:|".repeat(names.len()));
        for r in mem {
            let cells: Vec<String> = r
                .medians
                .iter()
                .map(|m| {
                    m.2.map_or("–".to_string(), |kb| format!("{:.0}", kb / 1024.0))
                })
                .collect();
            let _ = writeln!(md, "| {} | {} |", r.bench.name, cells.join(" | "));
        }
    }
    if let Some(svg) = charts {
        let _ = writeln!(md, "\n![ratio vs best peer]({svg})");
    }
    let _ = writeln!(md, "\n## What each benchmark does\n");
    for r in rows {
        let b = r.bench;
        let _ = write!(md, "- `{}` ({}): {}.", b.name, b.unit, b.about);
        if let Some(p) = b.peers {
            let _ = write!(md, " † Peers run their nearest equivalent: {p}.");
        }
        md.push('\n');
    }
    let _ = writeln!(md, "\n## Runtimes\n");
    for (name, about) in runtimes {
        let _ = writeln!(
            md,
            "- `{name}`: {}",
            about.split_once(": ").map_or(*about, |x| x.1)
        );
    }
    md
}

/// Just the table (what the README shows).
pub fn table(rows: &[Row]) -> String {
    let mut md = String::new();
    let Some(first) = rows.first() else {
        return md;
    };
    let names: Vec<&str> = first.medians.iter().map(|m| m.0).collect();
    let peers: Vec<&str> = first.ratios.iter().map(|r| r.0).collect();
    let mut head = vec!["benchmark".to_string(), "unit".to_string()];
    head.extend(names.iter().map(|n| n.to_string()));
    head.extend(peers.iter().map(|p| format!("vs {p}")));
    if !peers.is_empty() {
        head.push("vs best peer".to_string());
        head.push(format!("≥ {GOAL}"));
    }
    let _ = writeln!(md, "| {} |", head.join(" | "));
    let _ = writeln!(md, "|---|---|{}", "---:|".repeat(head.len() - 2));
    for r in rows {
        let mut cells = vec![
            if r.bench.peers.is_some() {
                format!("{} †", r.bench.name)
            } else {
                r.bench.name.to_string()
            },
            r.bench.unit.to_string(),
        ];
        cells.extend(r.medians.iter().map(|m| fmt_value(m.1)));
        cells.extend(r.ratios.iter().map(|x| fmt_spread(x.1)));
        if !peers.is_empty() {
            match r.best {
                Some((peer, s)) => {
                    cells.push(format!("**{}** ({peer})", fmt_spread(Some(s))));
                    cells.push(if s.median >= GOAL { "yes" } else { "**no**" }.to_string());
                }
                None => {
                    cells.push("–".to_string());
                    cells.push("–".to_string());
                }
            }
        }
        let _ = writeln!(md, "| {} |", cells.join(" | "));
    }
    md
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A horizontal bar chart of the ratio vs the best peer per benchmark, on a
/// log2 axis, with the 1.0 line and the goal line.
pub fn svg(h: &Header, rows: &[Row]) -> String {
    let bars: Vec<(&str, &str, Spread)> = rows
        .iter()
        .filter_map(|r| r.best.map(|(p, s)| (r.bench.name, p, s)))
        .collect();
    let (w, left, right, top, row_h) = (960.0_f64, 190.0_f64, 150.0_f64, 86.0_f64, 30.0_f64);
    let height = top + row_h * bars.len().max(1) as f64 + 70.0;
    let lo = bars
        .iter()
        .map(|b| b.2.min)
        .fold(0.5_f64, f64::min)
        .log2()
        .floor();
    let hi = bars
        .iter()
        .map(|b| b.2.max)
        .fold(2.0_f64, f64::max)
        .log2()
        .ceil();
    let x = |r: f64| left + (r.max(1e-9).log2() - lo) / (hi - lo) * (w - left - right);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" viewBox="0 0 {w} {height}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="24" font-size="17" font-weight="bold">aioloop vs best peer: peer time / aioloop time (log scale, &gt;1 = aioloop faster)</text>"#
    );
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="44" fill="#555">{} · {}</text>"##,
        esc(&h.date),
        esc(&h.machine)
    );
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="62" fill="#555">median across rounds; whiskers: min–max; memory rows: peer bytes / aioloop bytes</text>"##
    );
    let axis_bottom = top + row_h * bars.len() as f64;
    // Grid at powers of two.
    let mut e = lo;
    while e <= hi {
        let r = e.exp2();
        let gx = x(r);
        let label = if r >= 1.0 {
            format!("{r:.0}×")
        } else {
            format!("1/{:.0}", 1.0 / r)
        };
        let _ = writeln!(
            s,
            r##"<line x1="{gx:.1}" y1="{}" x2="{gx:.1}" y2="{axis_bottom}" stroke="#ddd"/><text x="{gx:.1}" y="{}" text-anchor="middle" fill="#555">{label}</text>"##,
            top - 8.0,
            axis_bottom + 18.0
        );
        e += 1.0;
    }
    for (i, (name, peer, sp)) in bars.iter().enumerate() {
        let y = top + row_h * i as f64;
        let (x1, xm) = (x(1.0), x(sp.median));
        let color = if sp.median >= GOAL {
            "#2e8b57"
        } else if sp.median >= 1.0 {
            "#e0a020"
        } else {
            "#c0392b"
        };
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 10.0,
            y + row_h / 2.0 + 4.0,
            esc(name)
        );
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}"/>"#,
            x1.min(xm),
            y + 6.0,
            (xm - x1).abs().max(1.0),
            row_h - 12.0
        );
        let (xa, xb, yc) = (x(sp.min), x(sp.max), y + row_h / 2.0);
        let _ = writeln!(
            s,
            r##"<line x1="{xa:.1}" y1="{yc:.1}" x2="{xb:.1}" y2="{yc:.1}" stroke="#222"/><line x1="{xa:.1}" y1="{:.1}" x2="{xa:.1}" y2="{:.1}" stroke="#222"/><line x1="{xb:.1}" y1="{:.1}" x2="{xb:.1}" y2="{:.1}" stroke="#222"/>"##,
            yc - 5.0,
            yc + 5.0,
            yc - 5.0,
            yc + 5.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{}× vs {}</text>"#,
            xb.max(x1) + 8.0,
            yc + 4.0,
            fmt_ratio(sp.median),
            esc(peer)
        );
    }
    let (x1, xg) = (x(1.0), x(GOAL));
    let _ = writeln!(
        s,
        r##"<line x1="{x1:.1}" y1="{}" x2="{x1:.1}" y2="{axis_bottom}" stroke="#000" stroke-width="1.5"/>"##,
        top - 8.0
    );
    let _ = writeln!(
        s,
        r##"<line x1="{xg:.1}" y1="{}" x2="{xg:.1}" y2="{axis_bottom}" stroke="#2e8b57" stroke-dasharray="4 3"/>"##,
        top - 8.0
    );
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="{:.1}" fill="#555">black line: 1.0 (parity) · dashed green: goal {GOAL} · green ≥ goal, amber 1.0–{GOAL}, red &lt; 1.0</text>"##,
        axis_bottom + 42.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_median() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = Spread::of(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert!(Spread::of(&[]).is_none());
    }

    #[test]
    fn ratios_never_round_across_the_goal() {
        assert_eq!(fmt_ratio(1.047), "1.047");
        assert_eq!(fmt_ratio(0.996), "0.996");
        assert_eq!(fmt_ratio(1.051), "1.05");
        assert_eq!(fmt_ratio(1.234), "1.23");
    }
}
