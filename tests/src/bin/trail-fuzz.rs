//! `trail-fuzz`: runs the node's fuzz targets (`trail_node::fuzz`) with
//! the structure-aware mutator of `trail_tests::fuzz`, in process, on the
//! stable toolchain.
//!
//! ```text
//! cargo build --release -p trail-tests --bin trail-fuzz
//! target/release/trail-fuzz --execs 10000000 --jobs 2      # every target
//! target/release/trail-fuzz --target pull_body --execs 1000000
//! target/release/trail-fuzz --save-seeds                   # (re)write tests/fuzz/corpus
//! ```
//!
//! A panic (an `assert!` of a target's invariant included) writes the input
//! to `target/fuzz-crashes/<target>-<hash>.bin` before the process aborts;
//! put it in `tests/fuzz/corpus/<target>/` once fixed so the replay keeps it.

use std::cell::RefCell;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use trail_node::fuzz::{Target, TARGETS};
use trail_tests::fuzz::{self, Rng};

#[derive(Parser)]
#[command(about = "Fuzz every decoder outside bytes reach")]
struct Args {
    /// Targets to run (default: all). Repeatable.
    #[arg(long)]
    target: Vec<String>,
    /// Executions per target.
    #[arg(long, default_value_t = 10_000_000)]
    execs: u64,
    /// Threads: targets run this many at a time.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Writes every target's seeds into tests/fuzz/corpus/<target>/ and exits.
    #[arg(long)]
    save_seeds: bool,
}

thread_local! {
    /// The input being run, for the panic hook.
    static CURRENT: RefCell<(&'static str, Vec<u8>)> = const { RefCell::new(("", Vec::new())) };
}

fn crash_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-crashes")
}

fn install_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        CURRENT.with(|c| {
            if let Ok(c) = c.try_borrow() {
                let (target, input) = &*c;
                let mut h = std::collections::hash_map::DefaultHasher::new();
                input.hash(&mut h);
                let dir = crash_dir();
                let _ = std::fs::create_dir_all(&dir);
                let path = dir.join(format!("{target}-{:016x}.bin", h.finish()));
                let _ = std::fs::write(&path, input);
                eprintln!(
                    "trail-fuzz: {target} crashed; input saved to {}",
                    path.display()
                );
            }
        });
        default(info);
    }));
}

struct Report {
    name: &'static str,
    execs: u64,
    secs: f64,
}

fn run(target: &'static Target, execs: u64, seed: u64) -> Report {
    let mut pool: Vec<Vec<u8>> = fuzz::seeds(target.name);
    pool.extend(fuzz::corpus(target.name).into_iter().map(|(_, b)| b));
    assert!(!pool.is_empty(), "{}: no seeds", target.name);
    let events = fuzz::event_pool();
    let max_len = fuzz::max_len(target.name);
    let mut rng = Rng::new(seed ^ target.name.len() as u64 ^ (target.name.as_ptr() as u64));
    let started = Instant::now();
    let mut last = Instant::now();
    // The seeds as they are, then mutations.
    for input in &pool {
        CURRENT.with(|c| {
            let mut c = c.borrow_mut();
            c.0 = target.name;
            c.1.clone_from(input);
        });
        CURRENT.with(|c| (target.run)(&c.borrow().1));
    }
    for n in 0..execs {
        CURRENT.with(|c| {
            let mut c = c.borrow_mut();
            c.0 = target.name;
            if target.name == "pull_body" && rng.below(3) == 0 {
                c.1 = fuzz::structured_pull(&mut rng, &events);
            } else {
                c.1.clone_from(&pool[rng.below(pool.len())]);
                fuzz::mutate(target.name, &mut c.1, &pool, &mut rng, max_len);
            }
        });
        CURRENT.with(|c| (target.run)(&c.borrow().1));
        if n % 4096 == 0 && last.elapsed().as_secs() >= 30 {
            last = Instant::now();
            let s = started.elapsed().as_secs_f64();
            eprintln!(
                "{}: {n} execs, {s:.0} s, {:.0}/s",
                target.name,
                n as f64 / s
            );
        }
    }
    Report {
        name: target.name,
        execs: execs + pool.len() as u64,
        secs: started.elapsed().as_secs_f64(),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let targets: Vec<&'static Target> = if args.target.is_empty() {
        TARGETS.iter().collect()
    } else {
        args.target
            .iter()
            .map(|n| {
                trail_node::fuzz::target(n).with_context(|| {
                    let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
                    format!("unknown target {n:?} (targets: {})", names.join(", "))
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    if args.save_seeds {
        for t in &targets {
            let dir = fuzz::corpus_dir().join(t.name);
            std::fs::create_dir_all(&dir)?;
            for (i, s) in fuzz::seeds(t.name).iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i:02}.bin")), s)?;
            }
            println!(
                "{}: {} seeds in {}",
                t.name,
                fuzz::seeds(t.name).len(),
                dir.display()
            );
        }
        return Ok(());
    }
    if args.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    install_hook();
    let queue = std::sync::Mutex::new(targets.into_iter());
    let reports = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..args.jobs {
            s.spawn(|| loop {
                let Some(t) = queue.lock().expect("not poisoned").next() else {
                    break;
                };
                let r = run(t, args.execs, args.seed);
                println!(
                    "{:<12} {:>11} execs {:>8.1} s {:>9.0} execs/s  0 crashes",
                    r.name,
                    r.execs,
                    r.secs,
                    r.execs as f64 / r.secs
                );
                reports.lock().expect("not poisoned").push(r);
            });
        }
    });
    let reports = reports.into_inner().expect("not poisoned");
    let total: u64 = reports.iter().map(|r| r.execs).sum();
    println!("{} targets, {total} executions, 0 crashes", reports.len());
    Ok(())
}
