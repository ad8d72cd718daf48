#!/usr/bin/env bash
# `make fuzz`: run every fuzz target (or FUZZ_TARGETS) for FUZZ_SECONDS each, one at a time,
# starting from corpora seeded with the fixtures, and print the executions and crashes of each.
# Exit status 1 when a target crashed (the input is kept under .cache/fuzz/artifacts/<target>/;
# replay it with `cargo +nightly fuzz run --fuzz-dir shared/fuzz <target> <file>`).
#
# Environment:
#   FUZZ_SECONDS    seconds per target (default 30)
#   FUZZ_TARGETS    space-separated targets (default: all, see `cargo fuzz list`)
#   FUZZ_TOOLCHAIN  rustup toolchain with -Z flags (default nightly)
#   FUZZ_SANITIZER  address (default) or none (faster; safe Rust needs no ASan to find panics)
#   FUZZ_ARGS       more libFuzzer flags, e.g. "-max_len=65536"
#   SHARED          the folder beside the repo with fixtures/istio (default ../shared)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
fuzz_dir=$root/shared/fuzz
cache=$root/.cache/fuzz
seconds=${FUZZ_SECONDS:-30}
toolchain=${FUZZ_TOOLCHAIN:-nightly}
sanitizer=${FUZZ_SANITIZER:-address}
shared=${SHARED:-$root/../shared}
read -r -a extra <<<"${FUZZ_ARGS:-}"

if ! cargo "+$toolchain" --version >/dev/null 2>&1; then
  echo "fuzz: needs the $toolchain toolchain (libFuzzer instrumentation uses -Z flags):" >&2
  echo "      rustup toolchain install $toolchain --profile minimal" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz (once per machine)" >&2
  cargo install cargo-fuzz --locked
fi
fuzz=(cargo "+$toolchain" fuzz)

bash "$fuzz_dir/seed.sh" "$shared/fixtures/istio" "$root/shared/tests/fixtures" "$cache/corpus"

if [ -n "${FUZZ_TARGETS:-}" ]; then
  read -r -a targets <<<"$FUZZ_TARGETS"
else
  mapfile -t targets < <("${fuzz[@]}" list --fuzz-dir "$fuzz_dir")
fi

mkdir -p "$cache/logs"
echo "fuzz: building ${#targets[@]} targets (sanitizer: $sanitizer; first build takes minutes)"
for t in "${targets[@]}"; do
  if ! "${fuzz[@]}" build --fuzz-dir "$fuzz_dir" -s "$sanitizer" "$t" >"$cache/logs/build.log" 2>&1; then
    tail -n 40 "$cache/logs/build.log" >&2
    echo "fuzz: building $t failed (log: $cache/logs/build.log)" >&2
    exit 2
  fi
done

summary=()
failed=0
total_runs=0
for t in "${targets[@]}"; do
  mkdir -p "$cache/artifacts/$t" "$cache/corpus/$t"
  log=$cache/logs/$t.log
  before=$(find "$cache/artifacts/$t" -type f | wc -l)
  echo "fuzz: $t for ${seconds}s"
  set +e
  "${fuzz[@]}" run --fuzz-dir "$fuzz_dir" -s "$sanitizer" "$t" "$cache/corpus/$t" -- \
    -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
    -dict="$fuzz_dir/fuzz.dict" -artifact_prefix="$cache/artifacts/$t/" "${extra[@]}" >"$log" 2>&1
  rc=$?
  set -e
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  runs=${runs:-0}
  total_runs=$((total_runs + runs))
  crashes=$(($(find "$cache/artifacts/$t" -type f | wc -l) - before))
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    failed=1
    crashes=$((crashes > 0 ? crashes : 1))
    echo "fuzz: $t FAILED (exit $rc); the end of $log:" >&2
    tail -n 40 "$log" >&2
  fi
  summary+=("$(printf '  %-15s %10s runs  %s crash(es)  corpus %s files' "$t" "$runs" "$crashes" \
    "$(find "$cache/corpus/$t" -type f | wc -l)")")
done

echo "fuzz: ${seconds}s per target, $total_runs executions in all"
printf '%s\n' "${summary[@]}"
exit "$failed"
