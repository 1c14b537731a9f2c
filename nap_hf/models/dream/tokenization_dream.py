"""Dream's tokenizer without remote code. The published `DreamTokenizer` is a remote-code class over
Qwen2-format byte-level BPE files (`vocab.json`, `merges.txt`); this local class of the same name
reads the same files, so `AutoTokenizer.from_pretrained("Dream-org/...")` works after `import nap_hf`
without `trust_remote_code`."""

from __future__ import annotations

from transformers import Qwen2Tokenizer

__all__ = ["DreamTokenizer"]


class DreamTokenizer(Qwen2Tokenizer):
    """Qwen2 byte-level BPE with Dream's special tokens (`<|mask|>`, `<|beginoftext|>`, ...), read from
    the checkpoint's `tokenizer_config.json` as published."""
