#!/usr/bin/env bash
# Runs every libFuzzer target for SECONDS (default 60), seeds from corpus/<target>/, new inputs
# into work/<target>/ (not committed), findings into artifacts/. Needs a nightly toolchain; the
# flags are those cargo-fuzz passes (without AddressSanitizer: the crates fuzzed forbid unsafe).
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_PER_TARGET=${1:-60}
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
TARGET=x86_64-unknown-linux-gnu
cargo +nightly build --release --bins --target "$TARGET" --target-dir target/libfuzzer
mkdir -p artifacts
for t in q scope_q types geo projection context expand; do
  mkdir -p "work/$t"
  "target/libfuzzer/$TARGET/release/$t" -max_total_time="$SECONDS_PER_TARGET" -max_len=16384 \
    -dict=ngsild.dict -artifact_prefix="artifacts/$t-" -print_final_stats=1 "work/$t" "corpus/$t" 2>&1 \
    | grep -E "^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+== ERROR|.*panicked)" \
    | sed "s/^/$t: /"
done
