//! The fuzz targets' committed corpus, replayed on stable: every input under
//! `fuzz/corpus/<target>/` (seeds from real messages and files, plus what fuzzing kept and
//! every crash it found, fixed) runs through the same harness as `cargo +nightly fuzz run`
//! and must not panic. `cargo test --release --test fuzz_corpus -- --ignored` rewrites the
//! seeds from real encoders (see `write_seed_corpus`).

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod harness;

#[path = "fuzz/seeds.rs"]
mod seeds;

use std::path::PathBuf;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

#[test]
fn committed_corpus_replays_without_a_panic() {
    let mut replayed = 0;
    for (target, run) in harness::TARGETS {
        let dir = corpus_dir(target);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (every target has a corpus)", dir.display()));
        let mut files = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&bytes));
            assert!(outcome.is_ok(), "{target}: {} panics", path.display());
            files += 1;
        }
        assert!(files > 0, "{target}: empty corpus");
        replayed += files;
    }
    assert!(replayed >= harness::TARGETS.len());
}

/// Writes seeds from real encoders into `fuzz/corpus/<target>/seed-*`.
#[test]
#[ignore = "regenerates the committed seeds"]
fn write_seed_corpus() {
    for (target, inputs) in seeds::all() {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in inputs {
            // Every seed is a valid input of its target.
            let run = harness::TARGETS
                .iter()
                .find(|(t, _)| *t == target)
                .unwrap()
                .1;
            run(&bytes);
            std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
        }
    }
}
