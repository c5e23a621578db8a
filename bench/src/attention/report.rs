//! The results of `dinonat bench attention` on the CPU: a table, JSON lines, CSV, and a log-log
//! plot with the sizes where full attention and NA cost the same.

use super::case::{Case, Pass};
use crate::args::AttentionArgs;
use crate::timing::gflop_per_s;
use std::fmt::Write as _;

pub(super) fn kernel_label(c: &Case) -> String {
    c.kernel.map_or("-".into(), |k| k.to_string())
}

pub(super) fn table(args: &AttentionArgs, threads: usize, cases: &[Case]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "attention (CPU, f32, {threads} threads): batch {} heads {} dim {} dilation {} rpb {}",
        args.batch, args.heads, args.dim, args.dilation, args.rpb
    );
    let _ = writeln!(
        s,
        "{:<5} {:>5} {:>7} {:>6} {:>8} {:>10} {:>8} {:>10} {:>8} {:>8} {:>12} {:>12}",
        "op",
        "size",
        "tokens",
        "kernel",
        "pass",
        "ms",
        "GFLOP/s",
        "cpu ms",
        "GFLOP/s",
        "repeats",
        "extra MiB",
        "naive MiB"
    );
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    for c in cases {
        let naive = if c.kernel.is_none() {
            format!("{:.1}", mib(c.naive_mem_bytes))
        } else {
            "-".into()
        };
        let dash = || "-".to_string();
        let rate = |ms: f64| format!("{:.1}", gflop_per_s(c.gflop, ms));
        let (ms, gflops, cpu, cpu_gflops, reps) = match c.timing {
            Some(t) => (
                format!("{:.3}", t.ms),
                rate(t.ms),
                t.cpu_ms.map_or_else(dash, |v| format!("{v:.3}")),
                t.cpu_ms.map_or_else(dash, rate),
                t.repeats.to_string(),
            ),
            None => ("skipped".into(), dash(), dash(), dash(), dash()),
        };
        let _ = writeln!(
            s,
            "{:<5} {:>5} {:>7} {:>6} {:>8} {:>10} {:>8} {:>10} {:>8} {:>8} {:>12.3} {:>12}",
            c.op(),
            c.size,
            c.tokens(),
            kernel_label(c),
            c.pass.name(),
            ms,
            gflops,
            cpu,
            cpu_gflops,
            reps,
            mib(c.extra_mem_bytes),
            naive
        );
    }
    let skipped: Vec<String> = cases
        .iter()
        .filter(|c| c.timing.is_none())
        .map(|c| skipped_line(args, c))
        .collect();
    if !skipped.is_empty() {
        let _ = writeln!(s, "skipped (--flop-budget {} GFLOP):", args.flop_budget);
        for line in skipped {
            let _ = writeln!(s, "  {line}");
        }
    }
    s
}

pub(super) fn skipped_line(args: &AttentionArgs, c: &Case) -> String {
    format!(
        "full {}x{} {}: {:.2} GFLOP forward > --flop-budget {}",
        c.size,
        c.size,
        c.pass.name(),
        if c.pass == Pass::Forward {
            c.gflop
        } else {
            c.gflop / 3.5
        },
        args.flop_budget
    )
}

pub(super) fn json_line(args: &AttentionArgs, threads: usize, c: &Case) -> String {
    let t = c.timing.expect("json lines are written for measured cases");
    let ms = t.ms;
    serde_json::json!({
        "op": c.op(),
        "size": c.size,
        "tokens": c.tokens(),
        "kernel": c.kernel,
        "dilation": args.dilation,
        "rpb": c.kernel.is_some() && args.rpb,
        "batch": args.batch,
        "heads": args.heads,
        "dim": args.dim,
        "pass": c.pass.name(),
        "ms": ms,
        "gflops": gflop_per_s(c.gflop, ms),
        "gflop": c.gflop,
        "repeats": t.repeats,
        "cpu_ms": t.cpu_ms,
        "cpu_gflops": t.cpu_ms.map(|v| gflop_per_s(c.gflop, v)),
        "threads": threads,
        "extra_mem_bytes": c.extra_mem_bytes,
        "naive_mem_bytes": c.naive_mem_bytes,
    })
    .to_string()
}

pub(super) fn csv(args: &AttentionArgs, threads: usize, cases: &[Case]) -> String {
    let mut s = String::from(
        "op,size,tokens,kernel,dilation,rpb,batch,heads,dim,pass,ms,gflops,cpu_ms,repeats,threads,\
         extra_mem_bytes,naive_mem_bytes,skipped\n",
    );
    for c in cases {
        let (ms, gflops, cpu, reps) = match c.timing {
            Some(t) => (
                format!("{:.4}", t.ms),
                format!("{:.2}", gflop_per_s(c.gflop, t.ms)),
                t.cpu_ms.map_or(String::new(), |v| format!("{v:.4}")),
                t.repeats.to_string(),
            ),
            None => (String::new(), String::new(), String::new(), String::new()),
        };
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            c.op(),
            c.size,
            c.tokens(),
            c.kernel.map_or(String::new(), |k| k.to_string()),
            args.dilation,
            c.kernel.is_some() && args.rpb,
            args.batch,
            args.heads,
            args.dim,
            c.pass.name(),
            ms,
            gflops,
            cpu,
            reps,
            threads,
            c.extra_mem_bytes,
            c.naive_mem_bytes,
            c.timing.is_none()
        );
    }
    s
}

/// The token count where full attention becomes slower than NA with `kernel` (log-log
/// interpolation between the two measured sizes around the sign change of log(full / na)).
pub(super) fn crossover(cases: &[Case], kernel: usize, pass: Pass, cpu: bool) -> Option<f64> {
    let series = |k: Option<usize>| -> Vec<(f64, f64)> {
        cases
            .iter()
            .filter(|c| c.kernel == k && c.pass == pass)
            .filter_map(|c| c.timing.map(|t| (c.tokens() as f64, t.plotted(cpu))))
            .collect()
    };
    let (na, fl) = (series(Some(kernel)), series(None));
    let ratio: Vec<(f64, f64)> = fl
        .iter()
        .filter_map(|&(n, f)| {
            na.iter()
                .find(|p| p.0 == n)
                .map(|&(_, a)| (n.ln(), (f / a).ln()))
        })
        .collect();
    ratio.windows(2).find_map(|w| {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        (y0 <= 0.0 && y1 > 0.0).then(|| (x0 + (x1 - x0) * (-y0) / (y1 - y0)).exp())
    })
}

/// Plots the CPU-time estimate when every case has one (it is the wall time on an idle machine,
/// and stays meaningful on a shared one), else the median wall time.
pub(super) fn draw(
    path: &std::path::Path,
    args: &AttentionArgs,
    cases: &[Case],
) -> Result<(), String> {
    let cpu = cases
        .iter()
        .filter_map(|c| c.timing)
        .all(|t| t.cpu_ms.is_some());
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    let mut markers: Vec<(String, f64)> = Vec::new();
    let passes: Vec<Pass> = [Pass::Forward, Pass::ForwardBackward]
        .into_iter()
        .filter(|p| cases.iter().any(|c| c.pass == *p))
        .collect();
    for &pass in &passes {
        let kinds = args.kernels.iter().map(|&k| Some(k)).chain([None]);
        for kernel in kinds {
            let points: Vec<(f64, f64)> = cases
                .iter()
                .filter(|c| c.kernel == kernel && c.pass == pass)
                .filter_map(|c| c.timing.map(|t| (c.tokens() as f64, t.plotted(cpu))))
                .collect();
            let name = match kernel {
                Some(k) => format!("NA k={k} {}", pass.name()),
                None => format!("full {}", pass.name()),
            };
            if !points.is_empty() {
                series.push((name, points));
            }
            if let Some(k) = kernel {
                if let Some(x) = crossover(cases, k, pass, cpu) {
                    markers.push((format!("full = NA k={k} {}", pass.name()), x));
                }
            }
        }
    }
    let title = format!(
        "attention on the CPU: batch {} heads {} dim {} dilation {} rpb {}",
        args.batch, args.heads, args.dim, args.dilation, args.rpb
    );
    let y_label = if cpu {
        "ms (process CPU time / threads)"
    } else {
        "median ms"
    };
    plot_png(path, &title, y_label, &series, &markers)
}

pub(super) fn plot_png(
    path: &std::path::Path,
    title: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    markers: &[(String, f64)],
) -> Result<(), String> {
    dinonat_report::plot::line_chart_loglog(path, title, "tokens (H x W)", y_label, series, markers)
        .map_err(|e| format!("--png {}: {e}", path.display()))
}
