#!/usr/bin/env bash
# chipfit on whatever GPU is here, in under 8 minutes: devices, bench --quick, measure of eight zoo workloads
# (ResNet-50 train and infer, GPT-2 train and infer, BERT, ViT, MobileNetV2, Llama-2-7B inference), calibrate,
# and validate --quick, all into one results store. Writes 8 files into $OUT if set, else
# benchmarks/results/gpu-DATE/ (cpu-smoke-DATE/ for the smoke): results.sqlite, devices.txt, bench.txt,
# measure.txt, calibrate.txt, validate.json, log.txt (stderr and timings) and summary.md (benchmarks/gpu_summary.py).
#
#   benchmarks/gpu_check.sh [--device cuda:N] [--cpu-smoke]
#
# Without a CUDA GPU, or with --cpu-smoke, the same steps run on the CPU at tiny sizes (a check of the script and
# of the CLI, not a measurement). Python: $PYTHON, else python3; chipfit from this checkout's src/.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
LIMIT_S=470  # every step ends by this many seconds from the start (each is cut short with `timeout` past it)

mode=gpu
device=cuda:0
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-smoke) mode=cpu-smoke ;;
    --device) device=${2:?--device needs a device id such as cuda:1}; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1; give --device cuda:N or --cpu-smoke." >&2; exit 2 ;;
  esac
  shift
done
if [ "$mode" = gpu ] && ! "$PY" -c "import sys, torch; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
  echo "gpu_check.sh: torch sees no CUDA GPU here; running the same steps on the CPU at tiny sizes (--cpu-smoke)." >&2
  mode=cpu-smoke
fi
[ "$mode" = cpu-smoke ] && device=local-cpu
out=${OUT:-benchmarks/results/$([ "$mode" = gpu ] && echo gpu || echo cpu-smoke)-$(date +%F)}
mkdir -p "$out"
db="$out/results.sqlite"
rm -f "$db" "$out/measure.txt" "$out/log.txt"

if [ "$mode" = gpu ]; then
  bench_args=(--quick)
  measures=(
    "resnet50 --train --batch 128 --precision bf16"
    "resnet50 --infer --batch 256 --precision bf16"
    "gpt2 --train --batch 16 --seq 1024 --precision bf16"
    "gpt2 --infer --batch 1 --seq 1024 --precision bf16"
    "bert-base-uncased --train --batch 32 --seq 512 --precision bf16"
    "vit_b_16 --train --batch 128 --precision bf16"
    "mobilenet_v2 --train --batch 128 --precision bf16"
    "llama-2-7b --infer --batch 1 --seq 2048 --precision bf16"
  )
  measure_args=(--reps 5)
  validate_args=(--quick --rounds 2 --reps 3)
else
  bench_args=(--quick --budget 0.02)
  measures=(
    "resnet18 --infer --batch 1"
    "mobilenet_v2 --train --batch 2"
    "gpt2 --infer --batch 1 --seq 16"
  )
  measure_args=(--reps 1)
  validate_args=(--quick --model resnet18 --rounds 1 --reps 1)
fi

steps=()
# step NAME FILE SECONDS_AT_MOST COMMAND...: run COMMAND (its stdout appended to FILE, stderr to log.txt), cut at
# SECONDS_AT_MOST or at LIMIT_S from the start, whichever is sooner; record its exit status and time.
step() {
  local name=$1 file=$2 most=$3
  shift 3
  local left=$((LIMIT_S - SECONDS))
  [ "$most" -gt "$left" ] && most=$left
  if [ "$most" -le 0 ]; then
    steps+=("$name|skipped: out of time|0")
    return
  fi
  local t0=$SECONDS
  echo "== $name" >> "$out/log.txt"
  timeout "$most" "$@" >> "$file" 2>> "$out/log.txt"
  local rc=$?
  steps+=("$name|$rc|$((SECONDS - t0))")
  echo "$name: exit $rc after $((SECONDS - t0)) s" >> "$out/log.txt"
}

chipfit=("$PY" -m chipfit)
step devices "$out/devices.txt" 30 "${chipfit[@]}" devices
step "bench ${bench_args[*]}" "$out/bench.txt" 150 \
  "${chipfit[@]}" bench --device "$device" "${bench_args[@]}" --db "$db"
for m in "${measures[@]}"; do
  # shellcheck disable=SC2086  # each entry is a model and its options
  step "measure $m" "$out/measure.txt" 90 "${chipfit[@]}" measure $m --device "$device" "${measure_args[@]}" --db "$db"
done
step calibrate "$out/calibrate.txt" 60 "${chipfit[@]}" calibrate --device "$device" --db "$db"
: > "$out/validate.json"
step "validate ${validate_args[*]}" "$out/validate.json" 600 \
  "${chipfit[@]}" validate --device "$device" "${validate_args[@]}" --db "$db" --json
[ -s "$out/validate.json" ] || rm -f "$out/validate.json"
"$PY" benchmarks/gpu_summary.py "$out" "${steps[@]}" 2>> "$out/log.txt"
echo "gpu_check.sh: $mode on $device in ${SECONDS} s; results in $out (summary.md)"
failed=$(printf '%s\n' "${steps[@]}" | awk -F'|' '$2 != 0' | wc -l)
[ "$failed" -eq 0 ]
