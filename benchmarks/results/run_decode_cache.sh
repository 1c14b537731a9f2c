#!/bin/sh
# The KV-cache speed figures of docs/caching.md, one suite after the other (CPU, 2 threads).
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=.venv/bin/python
$PY benchmarks/decode.py --cache --shapes trunk-heavy --steps 256 64 --cases confidence --repeats 2 --threads 2 --out-name decode_cache_trunk_heavy
$PY benchmarks/decode.py --cache --shapes decode --steps 256 64 --cases confidence threshold --repeats 2 --threads 2 --out-name decode_cache_decode_shape
$PY benchmarks/decode.py --cache --shapes decode --cases paper --repeats 1 --threads 2 --out-name decode_cache_paper_canvas
