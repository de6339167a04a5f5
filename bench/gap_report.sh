#!/usr/bin/env bash
# The gap report: compresses both real models of ../shared/models into every
# device tier, measures each tier against the full-precision model with
# `pocketlm gap`, and writes docs/gap-report.md with the tables and charts
# (docs/gap-report/*.svg). It also shows the two calibration claims:
#   - imatrix: each preset quantized with and without `--imatrix`, same size,
#     compared by KL divergence;
#   - target size: `quantize --target-size` at each preset's size, compared
#     with that preset.
# The text is ../shared/data/tinystories/tinystories_val.txt, split at a story
# boundary: calibration uses the last part, evaluation the first part, so no
# tier is measured on the text it was calibrated on.
#
# Usage: bench/gap_report.sh            (about 20 minutes on 2 idle cores)
# Files already in $WORK (the converted models, importance matrices, tiers) are
# reused: delete $WORK to start from scratch, as after a change to quantize.
# Environment: PLM (default build/pocketlm), SHARED (default ../shared),
# WORK (default /tmp/pocketlm-gap), CTX (default 128), THREADS (default 2),
# CALIB_CHUNKS (default 200: chunks of calibration text), EVAL_CHUNKS (default 400:
# chunks of evaluation text, 25,200 scored positions at CTX 128).
set -euo pipefail
cd "$(dirname "$0")/.."
plm=${PLM:-build/pocketlm}
shared=${SHARED:-../shared}
work=${WORK:-/tmp/pocketlm-gap}
ctx=${CTX:-128}
threads=${THREADS:-2}
report=docs/gap-report.md
charts=docs/gap-report
text="$shared/data/tinystories/tinystories_val.txt"
[ -f "$text" ] || { echo "bench/gap_report.sh: $text not found (set SHARED)" >&2; exit 1; }
mkdir -p "$work" "$charts"

presets="Q8_0 Q6_K Q5_K_M Q5_1 Q5_0 Q4_K_M Q4_1 Q4_0 Q3_K_M Q3_K_S Q2_K"
# Presets whose files the size fit is compared against (from large to small).
fit_presets="Q5_K_M Q4_K_M Q4_0 Q3_K_M Q2_K"
# F16 and Q8_0 have no scale search, so an importance matrix cannot change them.
imatrix_presets="Q6_K Q5_K_M Q5_1 Q5_0 Q4_K_M Q4_1 Q4_0 Q3_K_M Q3_K_S Q2_K"

# Evaluation text: the first stories up to the blank line after byte 520000;
# calibration text: the rest (about a third).
python3 - "$text" "$work/eval.txt" "$work/calib.txt" <<'EOF'
import sys
data = open(sys.argv[1], "rb").read()
cut = data.index(b"\n\n", 520000) + 2
open(sys.argv[2], "wb").write(data[:cut])
open(sys.argv[3], "wb").write(data[cut:])
EOF

run() { echo "+ $*" >&2; "$@"; }

# Quantizes, calibrates and measures one model; leaves $work/$name/gap.json.
measure_model() {
    local name=$1 dir="$work/$1"
    mkdir -p "$dir"
    local ref="$dir/$name-F32.gguf"
    local tiers=()
    [ -f "$ref" ] || case $name in
        stories260K) run "$plm" convert "$shared/models/stories260K/stories260K.bin" \
                         --vocab "$shared/models/stories260K/tok512.bin" -o "$ref" ;;
        *) run "$plm" convert "$shared/models/$name" -o "$ref" ;;
    esac
    # Sensitivities cost one pass over the text per matrix and type: 200 chunks
    # (25,000 tokens) keep that to minutes.
    [ -f "$dir/imatrix.gguf" ] || run "$plm" calibrate "$ref" --text "$work/calib.txt" -o "$dir/imatrix.gguf" -c "$ctx" \
        --chunks "${CALIB_CHUNKS:-200}" --sensitivity -t "$threads" > "$dir/calibrate.txt"
    [ -f "$dir/$name-F16.gguf" ] || run "$plm" quantize "$ref" "$dir/$name-F16.gguf" --type F16 -t "$threads" 2>/dev/null
    tiers+=("$dir/$name-F16.gguf")
    for p in $presets; do
        [ -f "$dir/$name-$p.gguf" ] || run "$plm" quantize "$ref" "$dir/$name-$p.gguf" --type "$p" -t "$threads" 2>/dev/null
        tiers+=("$dir/$name-$p.gguf")
    done
    for p in $imatrix_presets; do
        [ -f "$dir/$name-$p-imat.gguf" ] || run "$plm" quantize "$ref" "$dir/$name-$p-imat.gguf" --type "$p" --imatrix "$dir/imatrix.gguf" \
            -t "$threads" 2>/dev/null
        tiers+=("$dir/$name-$p-imat.gguf")
    done
    for p in $fit_presets; do
        local size
        size=$(stat -c %s "$dir/$name-$p-imat.gguf")
        [ -f "$dir/$name-fit-$p.gguf" ] || run "$plm" quantize "$ref" "$dir/$name-fit-$p.gguf" --target-size "$size" \
            --imatrix "$dir/imatrix.gguf" -t "$threads" 2>/dev/null
        tiers+=("$dir/$name-fit-$p.gguf")
    done
    run "$plm" gap --ref "$ref" "${tiers[@]}" --text "$work/eval.txt" -c "$ctx" -t "$threads" \
        --chunks "${EVAL_CHUNKS:-400}" \
        --device raspberry-pi-5 --json "$dir/gap.json" --svg "$charts/$name.svg" > "$dir/gap.md"
}

# Turns the JSON of both models into the report's comparison tables.
compare_tables() {
    python3 - "$@" <<'EOF'
import json, os, sys

def rows(path):
    return {os.path.basename(r["file"]).removesuffix(".gguf"): r for r in json.load(open(path))}

for name in sys.argv[1:]:
    r = rows(f"{os.environ['work']}/{name}/gap.json")
    print(f"\n### {name}: importance matrix, same size\n")
    print("| preset | bytes | KLD plain | KLD imatrix | change | top-1 plain | top-1 imatrix |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for p in os.environ["imatrix_presets"].split():
        a, b = r[f"{name}-{p}"], r[f"{name}-{p}-imat"]
        change = (b["kld_mean"] / a["kld_mean"] - 1) * 100 if a["kld_mean"] > 0 else 0.0
        print(f"| {p} | {a['bytes']} | {a['kld_mean']:.5f} | {b['kld_mean']:.5f} | {change:+.1f}% "
              f"| {a['top1_agreement']*100:.2f}% | {b['top1_agreement']*100:.2f}% |")
    print(f"\n### {name}: size fit against the presets (both with the importance matrix)\n")
    print("| preset | preset bytes | preset KLD | fit bytes | fit KLD | fit wins |")
    print("|---|---:|---:|---:|---:|---|")
    for p in os.environ["fit_presets"].split():
        a, b = r[f"{name}-{p}-imat"], r[f"{name}-fit-{p}"]
        wins = "yes" if b["bytes"] <= a["bytes"] and b["kld_mean"] < a["kld_mean"] else \
               "tie" if b["kld_mean"] == a["kld_mean"] else "no"
        print(f"| {p} | {a['bytes']} | {a['kld_mean']:.5f} | {b['bytes']} | {b['kld_mean']:.5f} | {wins} |")
EOF
}

models="stories260K tinystories-656k"
for m in $models; do measure_model "$m"; done

export work imatrix_presets fit_presets
{
    echo "# The gap report: what compression costs on the real models"
    echo
    echo "Generated by \`bench/gap_report.sh\` on $(date -u +%Y-%m-%d) ($(nproc) cores, $threads threads);"
    echo "do not edit by hand. Method: [gap.md](gap.md); presets: [quantize.md](quantize.md);"
    echo "calibration: [calibrate.md](calibrate.md)."
    echo
    echo "- Reference: each model converted to F32 from its published checkpoint."
    echo "- Text: \`tinystories_val.txt\` split at a story boundary: the first"
    echo "  $(stat -c %s "$work/eval.txt") bytes are the evaluation text, the remaining"
    echo "  $(stat -c %s "$work/calib.txt") bytes the calibration text (importance matrix and"
    echo "  sensitivities), so no tier is scored on text it was calibrated on."
    echo "- The first ${EVAL_CHUNKS:-400} chunks of $ctx tokens of the evaluation text; the second half of"
    echo "  each chunk is scored ($(( ${EVAL_CHUNKS:-400} * (ctx - 1 - ctx / 2) )) positions per model)."
    echo "- \`-imat\` tiers are quantized with \`--imatrix\`; \`fit-P\` tiers with"
    echo "  \`--target-size\` set to the size of preset P's \`-imat\` file."
    echo "- The \"fits\" column is for \`raspberry-pi-5\` (every tier of these tiny models fits)."
    echo "- Speeds and RSS are single measurements on a shared machine: compare them within a table only."
    echo "- These models are tiny: no row is a multiple of 256 values, so every K-quant falls back"
    echo "  (Q2_K/Q3_K to Q4_0, Q4_K to Q5_0, Q5_K to Q5_1, Q6_K to Q8_0), and stories260K's"
    echo "  feed-forward rows (172 values) are not even whole 32-blocks, so they stay F16."
    echo "  Presets that differ only in K-quant choices therefore give the same files here."
    for m in $models; do
        echo
        echo "## $m"
        echo
        cat "$work/$m/gap.md"
        echo
        echo "![KL divergence against size, $m](gap-report/$m.svg)"
    done
    echo
    echo "## Calibration"
    compare_tables $models
} > "$report"
echo "wrote $report and $charts/" >&2
