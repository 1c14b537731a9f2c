#!/bin/sh
# The isolated-paths speed figures of docs/isolation.md, one suite after the other (CPU).
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=.venv/bin/python
$PY benchmarks/decode.py --isolation --threads 2                     # m = 3 (paper canvas) and 8, 2 rounds
$PY benchmarks/decode.py --isolation --distributed --repeats 2       # 1 vs 2 processes, m = 3, 4, 8
$PY benchmarks/decode.py --isolation --threads 2 --shape decode --dtype float64 --paths 3 --repeats 1 \
    --out-name decode_isolation_steps_float64                         # isolated == masked, exactly
OMP_NUM_THREADS=1 $PY benchmarks/cache_toy.py --threads 1 --isolated  # accuracy with the dual cache in the rows
