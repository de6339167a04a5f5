#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each, one after
# the other with a single worker, on its corpus.
#
#   scripts/fuzz.sh [-t SECONDS] [-n RUNS] [TARGET...]
#     -t SECONDS  time per target (default 60)
#     -n RUNS     stop a target after this many executions instead (whichever first)
#     TARGET      gguf safetensors hf_config llama2c tokenizer_spm tokenizer_bpe
#                 chat_template server_request (redact when src/privacy/ has it);
#                 default all
#   env: FUZZ_BUILD (default build-fuzz), POCKETLM_SHARED (default ../shared),
#        CC (default clang)
#
# Each target reads fuzz/seeds/<t>/ and fuzz/regressions/<t>/ and keeps what it
# finds in $FUZZ_BUILD/corpus/<t>/ (merged down to a minimal set after the run).
# Crashes, hangs (-timeout, 10 s an input) and memory blow-ups (-rss_limit_mb,
# -malloc_limit_mb) are saved to $FUZZ_BUILD/findings/<t>/: minimize one with
#   $FUZZ_BUILD/fuzz/fuzz_<t> -minimize_crash=1 -runs=10000 FILE
# and add it to fuzz/regressions/<t>/ once fixed. Exit status 1 if anything was found.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
runs=-1
while getopts "t:n:h" opt; do
  case $opt in
    t) seconds=$OPTARG ;;
    n) runs=$OPTARG ;;
    *) sed -n '2,20p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))

all_targets="gguf safetensors hf_config llama2c tokenizer_spm tokenizer_bpe chat_template server_request redact"
targets=${*:-$all_targets}

build=${FUZZ_BUILD:-build-fuzz}
export POCKETLM_SHARED=${POCKETLM_SHARED:-$(cd .. && pwd)/shared}

# The largest input worth trying: above the biggest seed, small enough to stay fast.
max_len_of() {
  case $1 in
    gguf) echo 65536 ;;
    hf_config|llama2c) echo 16384 ;;
    tokenizer_spm|tokenizer_bpe) echo 2048 ;;
    *) echo 4096 ;;
  esac
}

t=$SECONDS
CC=${CC:-clang} cmake -S . -B "$build" -DPLM_FUZZ=ON -DBUILD_TESTING=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" --target $(printf 'fuzz_%s ' $targets) >/dev/null
echo "== fuzz targets built in $((SECONDS - t)) s"

found=0
printf '%-16s %8s %12s %9s %8s %9s\n' target seconds executions exec/s corpus findings
for target in $targets; do
  corpus=$build/corpus/$target
  findings=$build/findings/$target
  mkdir -p "$corpus" "$findings"
  dirs=("$corpus" "fuzz/seeds/$target")
  [[ -d fuzz/regressions/$target ]] && dirs+=("fuzz/regressions/$target")
  log=$build/findings/$target.log
  t=$SECONDS
  # A finding makes libFuzzer exit non-zero; it is counted below, not fatal here.
  "$build/fuzz/fuzz_$target" -max_total_time="$seconds" -runs="$runs" -timeout=10 \
    -rss_limit_mb=2048 -malloc_limit_mb=1024 -max_len="$(max_len_of "$target")" \
    -artifact_prefix="$findings/" -print_final_stats=1 "${dirs[@]}" >"$log" 2>&1 || true
  elapsed=$((SECONDS - t))
  executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  # Keep only the entries that add coverage.
  merged=$build/corpus/$target.merged
  rm -rf "$merged" && mkdir -p "$merged"
  "$build/fuzz/fuzz_$target" -merge=1 -timeout=10 -rss_limit_mb=2048 \
    -max_len="$(max_len_of "$target")" "$merged" "$corpus" >/dev/null 2>&1 &&
    rm -rf "$corpus" && mv "$merged" "$corpus"
  n_findings=$(find "$findings" -maxdepth 1 -type f | wc -l)
  n_corpus=$(find "$corpus" -maxdepth 1 -type f | wc -l)
  printf '%-16s %8d %12s %9s %8d %9d\n' "$target" "$elapsed" "${executions:-?}" \
    "$(( ${executions:-0} / (elapsed > 0 ? elapsed : 1) ))" "$n_corpus" "$n_findings"
  if ((n_findings > 0)); then
    found=1
    { grep -E "ERROR|invariant|SUMMARY" "$log" || true; } | head -5 | sed 's/^/    /'
    ls "$findings" | sed 's/^/    finding: /'
  fi
done
exit $found
