"""Which vocabulary tokenized a prepared dataset, so training refuses an LM that reads another one.

Data is tokenized once, with `tokenizer_from`'s tokenizer, for every LM of the grid (Gemma 2B and 7B
share one). An LM whose vocabulary differs would read every id as a different piece and train on
noise without any error; the toy study once did exactly that. `prepare` writes the fingerprint
beside the data, and both training stages compare it with the LM's before the first step.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from llava_gemma.errors import UserError

FILE = "vocabulary.json"


def fingerprint(tokenizer) -> str:
    """sha256 over the (piece, id) pairs: equal exactly when every piece has the same id."""
    pairs = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    return hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode()).hexdigest()


def write_vocabulary(out_dir: Path, tokenizer, source: str) -> None:
    (out_dir / FILE).write_text(json.dumps({"fingerprint": fingerprint(tokenizer), "size": len(tokenizer),
                                            "tokenizer": source}, indent=2) + "\n")


def check_vocabulary(data_dir: Path, tokenizer, lm_path: Path) -> None:
    """One clear error if ``data_dir`` was tokenized with another vocabulary than ``lm_path``'s."""
    recorded = data_dir / FILE
    if not recorded.is_file():  # prepared before fingerprints were written: nothing to compare
        return
    seen = json.loads(recorded.read_text())
    if seen["fingerprint"] != fingerprint(tokenizer):
        raise UserError(f"{data_dir} was tokenized with {seen['tokenizer']} ({seen['size']} pieces), whose vocabulary "
                        f"differs from the LM {lm_path}'s ({len(tokenizer)} pieces); point tokenizer_from at an LM "
                        "that shares this LM's tokenizer, or give the LMs one tokenizer.")
