#!/usr/bin/env bash
# One command that validates and benchmarks edgeconv's GPU paths on an NVIDIA GPU and writes
# bench/results/<gpu>.{md,json} with the environment (sized for about 6 minutes on an H200, torch.compile capped by
# --compile-budget; not yet run on one):
#   - every configuration's outputs against PyTorch FP32 on the CPU (max relative error, top-1 agreement) on real
#     photos, with the real ImageNet weights of mobilenet_v2 and efficientnet_lite0 where installed;
#   - the comparison set on PyTorch eager, CUDA graphs and torch.compile, FP32 and FP16, batch 1 and 8 (the
#     ShuffleNet V2 paper's GPU batch), beside the paper's Table 8 speeds;
#   - ShuffleNet V2's guideline micro-benchmarks (Tables 1-4) on the GPU: bench/results/guidelines-<gpu>.{md,json}.
#
#   bench/gpu_check.sh                          # on the GPU machine
#   bench/gpu_check.sh --device cpu --quick     # dry run of the same driver on a CPU (run by the tests)
#   bench/gpu_check.sh --out DIR                # results elsewhere; other options go to bench/run_bench.py
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

device=cuda
quick=0
out=()
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device=$2; shift 2 ;;
        --quick) quick=1; shift ;;
        --out) out=(--out "$2"); shift 2 ;;
        *) extra+=("$1"); shift ;;
    esac
done

# Models of the ShuffleNet V2 / MobileNet comparison, plus the one other real checkpoint of the zoo (validation).
models=shufflenet_v2_x1_0,mobilenet_v2,shufflenet_v2_x0_5,shufflenet_v2_x1_5,shufflenet_v2_x2_0,mobilenet_v1
models+=,mobilenet_v3_large,mobilenet_v3_small,efficientnet_b0,resnet50,repvgg_a0,efficientnet_lite0
models+=,mobilenet_v2_140,shufflenet_v1,nasnet_a_mobile
args=(--device "$device" --backends torch --precisions fp32,fp16 --batch 1,8 --no-breakdown)
if [ "$device" = cuda ]; then
    args+=(--torch-variants eager,cuda-graph,eager+tf32,compile,compile+cuda-graph --compile-budget 120)
else
    args+=(--torch-variants eager,compile --compile-budget 0)  # CPU: no CUDA graphs, fp16 or TF32; no compiling
fi
guidelines=(--device "$device" --backends torch --threads 0)  # the GPU machine's onnxruntime is a CPU build
if [ "$quick" = 1 ]; then
    args+=(--quick --models shufflenet_v2_x0_5 --iters 3 --warmup 1 --fidelity 4)
    guidelines+=(--quick --guidelines g1)
else
    args+=(--models "$models" --iters 100 --warmup 10 --repeats 2 --fidelity 124)
fi
"$PYTHON" bench/run_bench.py "${args[@]}" "${out[@]}" "${extra[@]}"
"$PYTHON" bench/guidelines.py "${guidelines[@]}" "${out[@]}"
