#!/usr/bin/env bash
# Runs fuzz targets one after another on one core and records what each did.
#   fuzz/campaign.sh RUNS MAX_SECONDS [TARGET...]   (default: every target)
# Each target starts from the committed corpus (fuzz/corpus/TARGET) copied into
# fuzz/corpus-run/TARGET (not committed); its libFuzzer log goes to fuzz/logs/TARGET.log and the
# final `DONE` line (executions, coverage, features) to fuzz/logs/summary.txt.
set -euo pipefail
cd "$(dirname "$0")"
runs=${1:-10000000}
max_time=${2:-1800}
shift 2 || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(proto_messages secagg_messages market_bids configs version_manifest telemetry_csv
           model_artifact telemetry_parquet he_frames)
fi
mkdir -p logs corpus-run
for t in "${targets[@]}"; do
  case "$t" in
    he_frames) max_len=70000 ;;
    telemetry_parquet|model_artifact) max_len=32768 ;;
    *) max_len=8192 ;;
  esac
  rm -rf "corpus-run/$t" && cp -r "corpus/$t" "corpus-run/$t"
  started=$(date +%s)
  cargo +nightly fuzz run --sanitizer none -O "$t" "corpus-run/$t" -- \
    -runs="$runs" -max_total_time="$max_time" -max_len="$max_len" -timeout=10 \
    -print_final_stats=1 >"logs/$t.log" 2>&1 || echo "$t: FAILED (see logs/$t.log)" >>logs/summary.txt
  done_line=$(grep -E "^#[0-9]+\s+DONE" "logs/$t.log" | tail -1 || true)
  echo "$t: $(( $(date +%s) - started )) s: $done_line" >>logs/summary.txt
done
