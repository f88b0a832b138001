//! `aioloop-bench`: aioloop against tokio (current_thread) and smol
//! (LocalExecutor + async-io), each (benchmark, runtime) pair in a fresh
//! process pinned to one CPU, round-robin over several rounds.
//!
//! See `bench/README.md` for what each benchmark does and how to read the
//! results.

mod benches;
mod report;
mod runtimes;
mod sys;
#[cfg(target_os = "linux")]
mod uring_peers;
mod xproc;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use benches::{Bench, Kind, Outcome, BENCHES};
use report::{BenchSamples, Header, Sample};
use runtimes::{RuntimeEntry, RUNTIMES};

const USAGE: &str = "\
aioloop-bench: aioloop vs tokio (current_thread) and smol (LocalExecutor + async-io)

USAGE:
  cargo run --release -p aioloop-bench -- [OPTIONS]

OPTIONS:
  --rounds N            rounds over every (benchmark, runtime) pair (default 5)
  --smoke               tiny sizes, 1 round, writes nothing unless --out is given
  --only a,b            only these benchmarks (see --list)
  --runtimes a,b        only these runtimes (default: all; ratios need aioloop)
  --cpu N               the CPU children are pinned to with taskset (default 1)
  --out DIR             where to write latest.{md,svg,csv} (default bench/results)
  --no-write            print only
  --list                list benchmarks and runtimes
  --cachegrind B R      instructions per op under valgrind --tool=cachegrind
                        (B: benchmark names a,b or all; R: a runtime name, or all)
  --strace B R          syscalls per op under strace -c -f, at smoke sizes
                        (B: benchmark names a,b, or all = the I/O benchmarks;
                        R: a runtime name, or all); writes results/syscalls.md
  --echo-server R MODE  the cross-process benchmark's echo server (MODE: streams
                        or protocols); prints `listening on ADDR`
  --echo-client ADDR CONNS MSG MILLIS PID
                        its shared load client; prints a CLIENT line
  --child B R           run one benchmark once and print a RESULT line
                        (used by the parent; also takes --smoke and --reps N)
  -h, --help            this text
";

#[derive(Debug)]
struct Args {
    rounds: usize,
    smoke: bool,
    only: Option<Vec<String>>,
    runtimes: Option<Vec<String>>,
    cpu: String,
    out: Option<PathBuf>,
    no_write: bool,
    list: bool,
    cachegrind: Option<(String, String)>,
    strace: Option<(String, String)>,
    child: Option<(String, String)>,
    reps: Option<u32>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        rounds: 5,
        smoke: false,
        only: None,
        runtimes: None,
        cpu: "1".to_string(),
        out: None,
        no_write: false,
        list: false,
        cachegrind: None,
        strace: None,
        child: None,
        reps: None,
    };
    let mut rounds_given = false;
    let mut it = std::env::args().skip(1);
    let list = |s: String| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(String::from)
            .collect()
    };
    while let Some(arg) = it.next() {
        let mut value = |what: &str| it.next().ok_or(format!("{arg} needs {what}"));
        match arg.as_str() {
            "--rounds" => {
                a.rounds = value("a number")?
                    .parse()
                    .map_err(|e| format!("--rounds: {e}"))?;
                rounds_given = true;
            }
            "--smoke" => a.smoke = true,
            "--only" => a.only = Some(list(value("benchmark names")?)),
            "--runtimes" => a.runtimes = Some(list(value("runtime names")?)),
            "--cpu" => a.cpu = value("a CPU number")?,
            "--out" => a.out = Some(PathBuf::from(value("a directory")?)),
            "--no-write" => a.no_write = true,
            "--list" => a.list = true,
            "--reps" => {
                a.reps = Some(
                    value("a number")?
                        .parse()
                        .map_err(|e| format!("--reps: {e}"))?,
                )
            }
            "--cachegrind" => {
                let b = value("a benchmark")?;
                let r = value("a runtime")?;
                a.cachegrind = Some((b, r));
            }
            "--strace" => {
                let b = value("a benchmark")?;
                let r = value("a runtime")?;
                a.strace = Some((b, r));
            }
            "--child" => {
                let b = value("a benchmark")?;
                let r = value("a runtime")?;
                a.child = Some((b, r));
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.smoke && !rounds_given {
        a.rounds = 1;
    }
    if a.rounds == 0 {
        return Err("--rounds must be at least 1".to_string());
    }
    Ok(a)
}

fn main() -> ExitCode {
    // The cross-process echo benchmark's two helper roles (see `xproc`).
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let role = match raw.first().map(String::as_str) {
        Some("--echo-server") => Some(match raw.get(1..3) {
            Some([r, m]) => xproc::Mode::parse(m).and_then(|m| xproc::serve_by_name(r, m)),
            _ => Err("--echo-server needs RUNTIME MODE".to_string()),
        }),
        Some("--echo-client") => Some(xproc::client(&raw[1..])),
        _ => None,
    };
    if let Some(result) = role {
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = if let Some((b, r)) = &args.child {
        child(b, r, args.smoke, args.reps)
    } else if args.list {
        list();
        Ok(())
    } else if let Some((b, r)) = &args.cachegrind {
        cachegrind(&args, b, r)
    } else if let Some((b, r)) = &args.strace {
        strace(&args, b, r)
    } else {
        parent(&args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn list() {
    println!("benchmarks:");
    for b in BENCHES {
        println!("  {:<20} {:<12} {}", b.name, b.unit, b.about);
    }
    println!("runtimes:");
    for r in RUNTIMES {
        println!("  {:<20} {}", r.name, r.about);
    }
}

// ---------------------------------------------------------------------------
// Child: one benchmark, one runtime, one RESULT line.

fn child(bench: &str, runtime: &str, smoke: bool, reps: Option<u32>) -> Result<(), String> {
    let b = benches::find(bench).ok_or_else(|| format!("unknown benchmark {bench:?}"))?;
    let r = runtimes::find(runtime).ok_or_else(|| format!("unknown runtime {runtime:?}"))?;
    let mut size = if smoke { b.smoke } else { b.full };
    if let Some(reps) = reps {
        size.reps = reps;
    }
    let o = (r.run)(b.name, size).ok_or_else(|| format!("{bench} has no body"))?;
    println!(
        "RESULT value={:.3} ops={} elapsed_ns={} peak_rss_kb={} extra={}",
        o.value,
        o.ops,
        o.elapsed_ns,
        o.peak_rss_kb,
        if o.extra.is_empty() { "-" } else { &o.extra }
    );
    // Leave without tearing down what the benchmark built.
    std::process::exit(0);
}

fn parse_result(stdout: &str) -> Option<Outcome> {
    let line = stdout.lines().find(|l| l.starts_with("RESULT "))?;
    let mut o = Outcome::default();
    for kv in line.split_whitespace().skip(1) {
        let (k, v) = kv.split_once('=')?;
        match k {
            "value" => o.value = v.parse().ok()?,
            "ops" => o.ops = v.parse().ok()?,
            "elapsed_ns" => o.elapsed_ns = v.parse().ok()?,
            "peak_rss_kb" => o.peak_rss_kb = v.parse().ok()?,
            "extra" => o.extra = v.to_string(),
            _ => {}
        }
    }
    Some(o)
}

// ---------------------------------------------------------------------------
// Parent

fn selected(args: &Args) -> Result<(Vec<&'static Bench>, Vec<&'static RuntimeEntry>), String> {
    let benches: Vec<&'static Bench> = match &args.only {
        None => BENCHES.iter().collect(),
        Some(names) => names
            .iter()
            .map(|n| {
                benches::find(n).ok_or_else(|| {
                    let all: Vec<&str> = BENCHES.iter().map(|b| b.name).collect();
                    format!("unknown benchmark {n:?}; known: {}", all.join(", "))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let runtimes: Vec<&'static RuntimeEntry> = match &args.runtimes {
        None => RUNTIMES.iter().collect(),
        Some(names) => {
            let mut v = names
                .iter()
                .map(|n| {
                    runtimes::find(n).ok_or_else(|| {
                        let all: Vec<&str> = RUNTIMES.iter().map(|r| r.name).collect();
                        format!("unknown runtime {n:?}; known: {}", all.join(", "))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            // Table order: as in RUNTIMES (aioloop first).
            v.sort_by_key(|r| RUNTIMES.iter().position(|x| x.name == r.name));
            v.dedup_by_key(|r| r.name);
            v
        }
    };
    Ok((benches, runtimes))
}

fn taskset_works(cpu: &str) -> bool {
    Command::new("taskset")
        .args(["-c", cpu, "true"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The command that runs one child, pinned when `pin` is given.
fn child_command(pin: Option<&str>, bench: &str, runtime: &str, smoke: bool) -> Command {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = match pin {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.args(["--child", bench, runtime]);
    if smoke {
        cmd.arg("--smoke");
    }
    cmd
}

fn run_child(
    pin: Option<&str>,
    bench: &str,
    runtime: &str,
    smoke: bool,
) -> Result<Outcome, String> {
    let out = child_command(pin, bench, runtime, smoke)
        .output()
        .map_err(|e| format!("cannot start the child: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match (out.status.success(), parse_result(&stdout)) {
        (true, Some(o)) => Ok(o),
        _ => Err(format!(
            "child {bench} {runtime} failed ({}):\n{}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

fn parent(args: &Args) -> Result<(), String> {
    let (mut benches, runtimes) = selected(args)?;
    if benches.iter().any(|b| b.is_xproc()) && !(taskset_works("0") && taskset_works("1")) {
        println!(
            "note: the cross-process benchmarks need `taskset` and CPUs 0 and 1: skipped here"
        );
        benches.retain(|b| !b.is_xproc());
    }
    let pin = if taskset_works(&args.cpu) {
        Some(args.cpu.as_str())
    } else {
        println!(
            "note: `taskset -c {}` is unavailable here: children run unpinned",
            args.cpu
        );
        None
    };
    let total = benches.len() * runtimes.len() * args.rounds;
    println!(
        "aioloop-bench: {} benchmark(s) x {} runtime(s) x {} round(s) = {total} child processes{}{}",
        benches.len(),
        runtimes.len(),
        args.rounds,
        pin.map_or(String::new(), |c| format!(", pinned to CPU {c}")),
        if args.smoke { " (smoke sizes)" } else { "" }
    );
    let started = Instant::now();
    // samples[(bench, runtime)][round]
    let mut samples: HashMap<(&str, &str), Vec<Option<Sample>>> = HashMap::new();
    let mut raw =
        String::from("benchmark,runtime,round,value,unit,ops,elapsed_ns,peak_rss_kb,extra\n");
    let mut failures = 0usize;
    let mut done = 0usize;
    for round in 0..args.rounds {
        for b in &benches {
            // Rotate the runtime order each round so no runtime always runs
            // right after the same other one.
            let mut order = runtimes.clone();
            let len = order.len();
            order.rotate_left(round % len.max(1));
            for r in order {
                done += 1;
                let res = run_child(pin, b.name, r.name, args.smoke);
                let slot = samples
                    .entry((b.name, r.name))
                    .or_insert_with(|| vec![None; args.rounds]);
                match res {
                    Ok(o) => {
                        println!(
                            "[{done:>3}/{total}] round {} {:<20} {:<8} {:>10.1} {}",
                            round + 1,
                            b.name,
                            r.name,
                            o.value,
                            b.unit
                        );
                        raw.push_str(&format!(
                            "{},{},{},{:.3},{},{},{},{},{}\n",
                            b.name,
                            r.name,
                            round + 1,
                            o.value,
                            b.unit,
                            o.ops,
                            o.elapsed_ns,
                            o.peak_rss_kb,
                            o.extra.replace(',', ";")
                        ));
                        slot[round] = Some(Sample {
                            value: o.value,
                            peak_rss_kb: o.peak_rss_kb,
                        });
                    }
                    Err(e) => {
                        failures += 1;
                        println!("[{done:>3}/{total}] {e}");
                    }
                }
            }
        }
    }
    let rows: Vec<report::Row> = benches
        .iter()
        .map(|b| {
            BenchSamples {
                bench: b,
                runtimes: runtimes.iter().map(|r| r.name).collect(),
                samples: runtimes
                    .iter()
                    .map(|r| samples.remove(&(b.name, r.name)).unwrap_or_default())
                    .collect(),
            }
            .row()
        })
        .collect();

    let mut command = "cargo run --release -p aioloop-bench".to_string();
    let passed: Vec<String> = std::env::args().skip(1).collect();
    if !passed.is_empty() {
        command.push_str(" -- ");
        command.push_str(&passed.join(" "));
    }
    let versions = sys::versions()
        .iter()
        .map(|(n, v)| format!("{n} {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let versions = format!("aioloop {}; {versions}", sys::aioloop_revision());
    let header = Header {
        date: sys::now_utc(),
        machine: format!(
            "{}, {} CPUs (nproc), Linux {}",
            sys::cpu_model(),
            sys::nproc(),
            sys::kernel()
        ),
        rustc: sys::rustc(),
        command,
        method: format!(
            "{} round(s), round-robin over every (benchmark, runtime) pair; each pair a fresh \
             process{}; time benchmarks: one fresh runtime per process, one untimed warm-up \
             repetition, then the timed ones, the child's value being its median repetition; \
             memory: RSS growth (/proc/self/statm) from before creating the items to after they \
             have all started and the runtime has turned 8 more times (steady state){}",
            args.rounds,
            pin.map_or(" (unpinned: taskset unavailable)".to_string(), |c| format!(
                " pinned with `taskset -c {c}`"
            )),
            if args.smoke { "; SMOKE sizes" } else { "" }
        ),
        versions,
    };
    let rt_about: Vec<(&str, &str)> = runtimes.iter().map(|r| (r.name, r.about)).collect();
    let md = report::markdown(&header, &rows, &rt_about, Some("latest.svg"));
    println!(
        "\n{}\nfinished in {:.0} s{}",
        report::table(&rows),
        started.elapsed().as_secs_f64(),
        if failures > 0 {
            format!(", {failures} child failure(s)")
        } else {
            String::new()
        }
    );
    let out_dir = match (&args.out, args.smoke, args.no_write) {
        (_, _, true) => None,
        (Some(d), _, _) => Some(d.clone()),
        (None, false, _) => Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results")),
        (None, true, _) => None,
    };
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let write = |name: &str, body: &str| {
            let p = dir.join(name);
            std::fs::write(&p, body).map_err(|e| format!("{}: {e}", p.display()))?;
            println!("wrote {}", p.display());
            Ok::<(), String>(())
        };
        write("latest.md", &md)?;
        write("latest.svg", &report::svg(&header, &rows))?;
        write("latest.csv", &raw)?;
    }
    if failures > 0 {
        return Err(format!("{failures} child process(es) failed"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Cachegrind: instructions per operation, a deterministic side figure.

/// Total instructions (`I refs`) of one child under cachegrind, and the ops
/// its timed part ran.
fn cachegrind_child(
    bench: &str,
    runtime: &str,
    smoke: bool,
    reps: u32,
) -> Result<(u64, u64), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new("valgrind");
    cmd.args([
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
    ])
    .arg(exe)
    .args(["--child", bench, runtime, "--reps", &reps.to_string()]);
    if smoke {
        cmd.arg("--smoke");
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run valgrind (is it installed?): {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let o = parse_result(&stdout)
        .ok_or_else(|| format!("{bench} {runtime} under valgrind failed:\n{stdout}{stderr}"))?;
    let ir = stderr
        .lines()
        .filter_map(|l| {
            let rest = l.split_once("== ").map_or(l, |x| x.1).trim_start();
            let rest = rest.strip_prefix('I')?.trim_start().strip_prefix("refs:")?;
            rest.trim().replace(',', "").parse::<u64>().ok()
        })
        .next()
        .ok_or_else(|| format!("no `I refs` line in valgrind's output:\n{stderr}"))?;
    Ok((ir, o.ops))
}

/// The benchmarks of a comma-separated list of names.
fn find_benches(list: &str) -> Result<Vec<&'static Bench>, String> {
    list.split(',')
        .map(|n| benches::find(n).ok_or_else(|| format!("unknown benchmark {n:?}")))
        .collect()
}

fn cachegrind(args: &Args, bench: &str, runtime: &str) -> Result<(), String> {
    let benches: Vec<&Bench> = if bench == "all" {
        BENCHES.iter().filter(|b| b.kind == Kind::Time).collect()
    } else {
        find_benches(bench)?
    };
    let rts: Vec<&RuntimeEntry> = if runtime == "all" {
        RUNTIMES.iter().collect()
    } else {
        vec![runtimes::find(runtime).ok_or_else(|| format!("unknown runtime {runtime:?}"))?]
    };
    println!(
        "instructions per op = (Ir with 3 timed reps - Ir with 1) / (ops difference): setup and warm-up cancel out"
    );
    let mut md = format!(
        "# Instructions per operation (valgrind --tool=cachegrind)\n\n- Date: {}\n- Machine: {}, Linux {}\n- Command: `cargo run --release -p aioloop-bench -- --cachegrind {bench} {runtime}{}`\n- Method: (I refs of a child running 3 timed repetitions − I refs with 1) / (the difference in ops); setup and the warm-up cancel out. Deterministic, except the timer benchmarks (their timing changes under valgrind).\n\n| benchmark | per | {} |\n|---|---|{}\n",
        sys::now_utc(),
        sys::cpu_model(),
        sys::kernel(),
        if args.smoke { " --smoke" } else { "" },
        rts.iter().map(|r| format!("{} Ir/op", r.name)).collect::<Vec<_>>().join(" | "),
        "---:|".repeat(rts.len())
    );
    for b in &benches {
        if b.kind == Kind::Memory {
            println!("{}: memory benchmark, no instruction count", b.name);
            continue;
        }
        let mut cells = Vec::new();
        for r in &rts {
            let (ir1, ops1) = cachegrind_child(b.name, r.name, args.smoke, 1)?;
            let (ir3, ops3) = cachegrind_child(b.name, r.name, args.smoke, 3)?;
            let per_op = ir3.saturating_sub(ir1) as f64 / ops3.saturating_sub(ops1).max(1) as f64;
            println!(
                "{:<20} {:<8} {per_op:>10.0} instructions/op",
                b.name, r.name
            );
            cells.push(format!("{per_op:.0}"));
        }
        md.push_str(&format!(
            "| {} | {} | {} |\n",
            b.name,
            b.unit.trim_start_matches("ns/"),
            cells.join(" | ")
        ));
    }
    if bench == "all" && runtime == "all" && !args.no_write && (!args.smoke || args.out.is_some()) {
        let dir = args
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let p = dir.join("cachegrind.md");
        std::fs::write(&p, md).map_err(|e| format!("{}: {e}", p.display()))?;
        println!("wrote {}", p.display());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// strace: system calls per operation, a side figure for the I/O benchmarks.

/// `(syscall, calls, errors)` rows of an `strace -c` summary (without the
/// `total` row).
fn parse_strace_summary(text: &str) -> Vec<(String, u64, u64)> {
    let mut rows = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // % time, seconds, usecs/call, calls, [errors], syscall
        if f.len() < 5 || f[0].parse::<f64>().is_err() || f[1].parse::<f64>().is_err() {
            continue;
        }
        let name = f[f.len() - 1];
        if name == "total" {
            continue;
        }
        let Ok(calls) = f[3].parse::<u64>() else {
            continue;
        };
        let errors = if f.len() >= 6 {
            f[4].parse::<u64>().unwrap_or(0)
        } else {
            0
        };
        rows.push((name.to_string(), calls, errors));
    }
    rows
}

/// Per syscall: `(calls, errors)`.
type SyscallCounts = HashMap<String, (u64, u64)>;

/// One child under `strace -c -f` (pinned like the timed children): its
/// per-syscall counts and the ops its timed part ran.
fn strace_child(
    pin: Option<&str>,
    bench: &str,
    runtime: &str,
    reps: u32,
) -> Result<(SyscallCounts, u64), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let file = std::env::temp_dir().join(format!(
        "aioloop-bench-strace-{}-{bench}-{runtime}-{reps}.txt",
        std::process::id()
    ));
    let mut cmd = match pin {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpu, "strace"]);
            c
        }
        None => Command::new("strace"),
    };
    cmd.args(["-c", "-f", "-o"]).arg(&file).arg(exe).args([
        "--child",
        bench,
        runtime,
        "--smoke",
        "--reps",
        &reps.to_string(),
    ]);
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run strace (is it installed?): {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let o = parse_result(&stdout).ok_or_else(|| {
        format!(
            "{bench} {runtime} under strace failed ({}):\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()));
    let _ = std::fs::remove_file(&file);
    let rows = parse_strace_summary(&text?);
    if rows.is_empty() {
        return Err(format!("no strace summary for {bench} {runtime}"));
    }
    let counts = rows.into_iter().map(|(n, c, e)| (n, (c, e))).collect();
    Ok((counts, o.ops))
}

fn strace(args: &Args, bench: &str, runtime: &str) -> Result<(), String> {
    let benches: Vec<&Bench> = if bench == "all" {
        BENCHES.iter().filter(|b| b.is_io()).collect()
    } else {
        find_benches(bench)?
    };
    let rts: Vec<&RuntimeEntry> = if runtime == "all" {
        RUNTIMES.iter().collect()
    } else {
        vec![runtimes::find(runtime).ok_or_else(|| format!("unknown runtime {runtime:?}"))?]
    };
    let pin = taskset_works(&args.cpu).then_some(args.cpu.as_str());
    println!(
        "syscalls per op = (calls with 3 timed reps - calls with 1) / (ops difference), smoke sizes, \
         every thread (strace -c -f){}",
        pin.map_or(String::new(), |c| format!(", pinned to CPU {c}"))
    );
    let mut md = format!(
        "# System calls per operation (strace -c -f)\n\n- Date: {}\n- Machine: {}, {} CPUs (nproc), Linux {}\n- Command: `cargo run --release -p aioloop-bench -- --strace {bench} {runtime}`\n- Method: each child runs at its `--smoke` size under `strace -c -f` (every thread counted){}, once with 1 timed repetition and once with 3; (calls with 3 − calls with 1) / (the difference in ops), so setup (connecting, binding) and the warm-up cancel out. \"failed\" counts calls that returned an error (for reads, EAGAIN: a speculative read that found nothing). Issue 4's goal: at most 4.1 per round trip at 64 connections.\n\n| benchmark | runtime | syscalls / op | failed / op | top syscalls per op (failed) |\n|---|---|---:|---:|---|\n",
        sys::now_utc(),
        sys::cpu_model(),
        sys::nproc(),
        sys::kernel(),
        pin.map_or(String::new(), |c| format!(", pinned with `taskset -c {c}`"))
    );
    for b in &benches {
        for r in &rts {
            let (c1, ops1) = strace_child(pin, b.name, r.name, 1)?;
            let (c3, ops3) = strace_child(pin, b.name, r.name, 3)?;
            let dops = ops3.saturating_sub(ops1).max(1) as f64;
            let mut per: Vec<(String, f64, f64)> = c3
                .iter()
                .map(|(name, &(calls, errs))| {
                    let (calls1, errs1) = c1.get(name).copied().unwrap_or((0, 0));
                    (
                        name.clone(),
                        calls.saturating_sub(calls1) as f64 / dops,
                        errs.saturating_sub(errs1) as f64 / dops,
                    )
                })
                .filter(|x| x.1 >= 0.005)
                .collect();
            per.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let total: f64 = per.iter().map(|x| x.1).sum();
            let failed: f64 = per.iter().map(|x| x.2).sum();
            let top = per
                .iter()
                .take(6)
                .map(|(n, c, e)| {
                    if *e >= 0.005 {
                        format!("{n} {c:.2} ({e:.2})")
                    } else {
                        format!("{n} {c:.2}")
                    }
                })
                .collect::<Vec<_>>()
                .join(", ");
            let per_what = b.unit.trim_start_matches("ns/");
            println!(
                "{:<20} {:<8} {total:>7.2} syscalls/{per_what} ({failed:.2} failed): {top}",
                b.name, r.name
            );
            md.push_str(&format!(
                "| {} | {} | {total:.2} | {failed:.2} | {top} |\n",
                b.name, r.name
            ));
        }
    }
    if !args.no_write {
        let dir = args
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let p = dir.join("syscalls.md");
        std::fs::write(&p, md).map_err(|e| format!("{}: {e}", p.display()))?;
        println!("wrote {}", p.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strace_summary() {
        let text = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ------------------
 56.08    0.137629          13     10304      5184 recvfrom
 41.05    0.100743          19      5120           sendto
------ ----------- ----------- --------- --------- ------------------
100.00    0.245414          15     15424      5184 total
";
        assert_eq!(
            parse_strace_summary(text),
            vec![
                ("recvfrom".to_string(), 10304, 5184),
                ("sendto".to_string(), 5120, 0)
            ]
        );
    }

    #[test]
    fn parses_result_line() {
        let o = parse_result(
            "noise\nRESULT value=12.500 ops=10 elapsed_ns=125 peak_rss_kb=7 extra=-\n",
        )
        .unwrap();
        assert_eq!(
            (o.value, o.ops, o.elapsed_ns, o.peak_rss_kb),
            (12.5, 10, 125, 7)
        );
        assert!(parse_result("nothing").is_none());
    }

    #[test]
    fn every_bench_runs_on_every_runtime_in_smoke_size() {
        // Run in-process on this test thread: each runtime builds its own.
        // The cross-process ones start this binary's helper roles, which a
        // test harness does not have: `--smoke` runs them (scripts/test.sh).
        for b in BENCHES
            .iter()
            .filter(|b| b.kind == Kind::Time && !b.is_xproc())
        {
            for r in RUNTIMES {
                let o = (r.run)(b.name, b.smoke).expect("known benchmark");
                assert!(o.value > 0.0 && o.ops > 0, "{} {}: {o:?}", b.name, r.name);
            }
        }
    }
}
