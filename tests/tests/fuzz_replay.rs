//! The fuzz targets in CI: every kept corpus input (`tests/fuzz/corpus/`,
//! seeds and inputs that once crashed) and every seed runs through its
//! target, then a short mutation run per target. The long runs are
//! `trail-fuzz` (BENCHMARKS.md has their counts).

use trail_node::fuzz::TARGETS;
use trail_tests::fuzz::{self, Rng};

#[test]
fn every_target_has_a_kept_corpus_and_the_corpus_replays() {
    for t in TARGETS {
        let kept = fuzz::corpus(t.name);
        assert!(
            !kept.is_empty(),
            "{}: no corpus in {} (trail-fuzz --save-seeds)",
            t.name,
            fuzz::corpus_dir().display()
        );
        for (path, input) in &kept {
            eprintln!("{}", path.display());
            (t.run)(input);
        }
        for input in fuzz::seeds(t.name) {
            (t.run)(&input);
        }
    }
}

#[test]
fn a_short_mutation_run_of_every_target_finds_nothing() {
    let events = fuzz::event_pool();
    for t in TARGETS {
        let mut pool = fuzz::seeds(t.name);
        pool.extend(fuzz::corpus(t.name).into_iter().map(|(_, b)| b));
        let mut rng = Rng::new(20261202);
        let n = if t.name == "pull_body" { 3_000 } else { 20_000 };
        for _ in 0..n {
            let input = if t.name == "pull_body" && rng.below(3) == 0 {
                fuzz::structured_pull(&mut rng, &events)
            } else {
                let mut input = pool[rng.below(pool.len())].clone();
                fuzz::mutate(t.name, &mut input, &pool, &mut rng, fuzz::max_len(t.name));
                input
            };
            (t.run)(&input);
        }
    }
}

#[test]
fn the_mutator_reaches_past_the_first_decoder() {
    // A blind fuzzer is only worth its executions if mutated inputs get
    // past decompression and protobuf into the parser: count how many do.
    let events = fuzz::event_pool();
    let mut rng = Rng::new(5);
    let mut decoded = 0;
    for _ in 0..500 {
        let input = fuzz::structured_pull(&mut rng, &events);
        let (head, rest) = input.split_at(4);
        let compression = match head[0] & 3 {
            1 => trail_node::sls::codec::Compression::Lz4,
            2 => trail_node::sls::codec::Compression::Zstd,
            _ => trail_node::sls::codec::Compression::None,
        };
        let size = u32::from_le_bytes([head[1], head[2], head[3], 0]) as usize;
        if let Ok(raw) = trail_node::sls::codec::decompress(compression, rest.to_vec().into(), size)
        {
            if trail_node::sls::codec::decode_log_group_list(raw).is_ok() {
                decoded += 1;
            }
        }
    }
    assert!(
        decoded > 250,
        "only {decoded} of 500 structured inputs decoded"
    );
}

#[test]
fn what_the_fuzzer_found_stays_fixed() {
    // An event with a byte that is not UTF-8 inside an object the parser
    // skips: it passed, and every HEC envelope carrying it was invalid JSON.
    // Now a dead letter `invalid_utf8`; the target asserts every envelope parses.
    let mut g = trail_devstack::gen::Generator::new(3);
    let good = g.next_event().into_bytes();
    let mut bad = good.clone();
    let at = bad.len() - 3;
    bad[at] = 0xff;
    let raw = fuzz::log_group_list(&[good, bad], 1);
    for every_event in [false, true] {
        for compression in [
            trail_node::sls::codec::Compression::None,
            trail_node::sls::codec::Compression::Lz4,
        ] {
            (trail_node::fuzz::TARGETS[0].run)(&fuzz::pull_input(
                compression,
                every_event,
                &raw,
                None,
            ));
        }
    }
}
