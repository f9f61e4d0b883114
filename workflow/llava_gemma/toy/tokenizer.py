"""A Gemma-style tokenizer for the toy world, trained with SentencePiece in well under a second.

It mirrors Gemma's: BPE, byte fallback, no dummy prefix, ids pad=0 eos=1 bos=2 unk=3, and the
chat tokens ``<start_of_turn>``/``<end_of_turn>`` (plus ``<image>``) as single pieces.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm
from transformers import GemmaTokenizerFast

from llava_gemma.model.chat import END_OF_TURN, IMAGE_TOKEN, START_OF_TURN


def train_toy_tokenizer(lines: Iterable[str], out_dir: str | Path, vocab_size: int = 1000, *,
                        image_token: bool = True) -> GemmaTokenizerFast:
    """``image_token=False`` leaves ``<image>`` out, as in the real Gemma vocabulary (the pipeline adds it)."""
    model = io.BytesIO()
    image = [IMAGE_TOKEN] if image_token else []
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, model_type="bpe", vocab_size=vocab_size,
        hard_vocab_limit=False, pad_id=0, eos_id=1, bos_id=2, unk_id=3,
        pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>",
        user_defined_symbols=[START_OF_TURN, END_OF_TURN, *image, "\n"],
        byte_fallback=True, add_dummy_prefix=False, remove_extra_whitespaces=False,
        normalization_rule_name="identity", split_digits=True, num_threads=2, minloglevel=2,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tokenizer.model").write_bytes(model.getvalue())
    tokenizer = GemmaTokenizerFast(vocab_file=str(out_dir / "tokenizer.model"))
    # Gemma marks its turn markers special, so decoding with skip_special_tokens drops them.
    tokenizer.add_special_tokens({"additional_special_tokens": [START_OF_TURN, END_OF_TURN, *image]})
    tokenizer.save_pretrained(out_dir)
    return tokenizer
