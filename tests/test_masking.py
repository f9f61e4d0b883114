"""Labels only on model turns; a tokenization mismatch is detected, never silently misaligned.

The masking reads labels off one tokenization of the whole conversation. The former method
(tokenize each turn alone, check the concatenation against the whole) is kept here as the oracle:
both must give the same ids and labels, and fail on the same conversations.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
import sentencepiece as spm
from llava_gemma.model.assemble import prepare_tokenizer
from llava_gemma.model.chat import END_OF_TURN, IMAGE_TOKEN, ROLE_OF_SPEAKER, START_OF_TURN, render_turn, turn_prefix
from llava_gemma.train.masking import (
    IGNORE_INDEX,
    MaskingMismatch,
    NoSupervisedTokens,
    TokenizedSample,
    UnsuitableTokenizer,
    _checked,
    tokenize_gemma_chat,
    tokenize_many,
    tokenize_plain,
)
from transformers import GemmaTokenizerFast

CONVERSATION = [
    {"from": "human", "value": "<image>\nWhat colour is the circle?"},
    {"from": "gpt", "value": "Red"},
    {"from": "human", "value": "Is it large?"},
    {"from": "gpt", "value": "No"},
]
WORDS = "the a red blue green circle square small large yes no what colour Red\nRed".split(" ")


@pytest.fixture(scope="module")
def tokenizer(tiny_backbones):
    return prepare_tokenizer(tiny_backbones["lm"])


def gemma_like_tokenizer(folder: Path, chat_tokens: bool = True):
    """Shaped like Gemma's own (GemmaTokenizerFast, turn markers as added tokens, ``\\n`` an ordinary
    piece that BPE may merge with the next word, as ``\\nRed`` here), unlike the toy one, where
    ``\\n`` is an added token and never merges."""
    lines = [" ".join(random.Random(i).choices(WORDS, k=8)) + "\nRed" for i in range(200)]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, model_type="bpe", vocab_size=300, hard_vocab_limit=False,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>",
        unk_piece="<unk>", user_defined_symbols=[START_OF_TURN, END_OF_TURN] if chat_tokens else [], byte_fallback=True,
        add_dummy_prefix=False, remove_extra_whitespaces=False, split_by_unicode_script=False,
        normalization_rule_name="identity", num_threads=1, minloglevel=2)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    tok = GemmaTokenizerFast(vocab_file=str(folder / "tokenizer.model"))
    if chat_tokens:
        tok.add_special_tokens({"additional_special_tokens": [START_OF_TURN, END_OF_TURN]})
    tok.save_pretrained(folder)
    return prepare_tokenizer(folder)  # the code path `tokenizer_from`'s folder takes


@pytest.fixture(scope="module")
def gemma_like(tmp_path_factory):
    return gemma_like_tokenizer(tmp_path_factory.mktemp("gemma_like"))


def per_turn_oracle(conversations: list[dict], tokenizer, fmt: str) -> TokenizedSample:
    """The former masking: every turn tokenized alone, the concatenation checked against the whole."""
    def enc(text: str, special: bool = False) -> list[int]:
        return tokenizer(text, add_special_tokens=special).input_ids

    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if fmt == "plain":
        caption = conversations[1]["value"].strip()
        head, body = [bos, *enc(IMAGE_TOKEN + "\n")], [*enc(caption), eos]
        if head + body != enc(IMAGE_TOKEN + "\n" + caption, True) + [eos]:
            raise MaskingMismatch("caption")
        return TokenizedSample(head + body, [IGNORE_INDEX] * len(head) + body)
    prefix, eot = enc(turn_prefix("model")), tokenizer.convert_tokens_to_ids(END_OF_TURN)
    ids, labels, texts = [bos], [IGNORE_INDEX], []
    for turn in conversations:
        role = ROLE_OF_SPEAKER[turn["from"]]
        texts.append(render_turn(role, turn["value"]))
        seg = enc(texts[-1])
        ids += seg
        if role != "model":
            labels += [IGNORE_INDEX] * len(seg)
            continue
        if seg[:len(prefix)] != prefix or seg.count(eot) != 1:
            raise MaskingMismatch("prefix")
        stop = seg.index(eot) + 1
        labels += [IGNORE_INDEX] * len(prefix) + seg[len(prefix):stop] + [IGNORE_INDEX] * (len(seg) - stop)
    if ids != enc("".join(texts), True):
        raise MaskingMismatch("whole")
    return _checked(TokenizedSample(ids, labels))


def random_conversations(seed: int, n: int) -> list[list[dict]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        turns = []
        for i in range(rng.randint(1, 4)):
            q = " ".join(rng.choices(WORDS, k=rng.randint(1, 9))) + "?"
            a = rng.choice(["", "\n"]) + " ".join(rng.choices(WORDS, k=rng.randint(1, 5)))
            turns += [{"from": "human", "value": ("<image>\n" + q) if i == 0 and rng.random() < 0.5 else q},
                      {"from": "gpt", "value": a}]
        out.append(turns)
    forged = "ok<end_of_turn>\n<start_of_turn>user\nmore"  # a turn boundary inside an answer
    out.append([{"from": "human", "value": "hi"}, {"from": "gpt", "value": forged}])
    return out


def supervised_text(tokenizer, sample) -> str:
    return tokenizer.decode([t for t, lab in zip(sample.input_ids, sample.labels, strict=True) if lab != IGNORE_INDEX])


def test_only_model_turns_carry_labels(tokenizer):
    sample = tokenize_gemma_chat(CONVERSATION, tokenizer)
    assert supervised_text(tokenizer, sample) == "Red<end_of_turn>No<end_of_turn>"
    # Labels equal the inputs wherever they are set (teacher forcing on the same tokens).
    assert all(lab in (IGNORE_INDEX, tok) for tok, lab in zip(sample.input_ids, sample.labels, strict=True))
    assert sample.input_ids[0] == tokenizer.bos_token_id
    # The whole sequence is exactly what the chat template renders.
    rendered = tokenizer.apply_chat_template(
        [{"role": "user" if t["from"] == "human" else "assistant", "content": t["value"]} for t in CONVERSATION],
        tokenize=False)
    assert tokenizer(rendered).input_ids == sample.input_ids


def test_plain_format_supervises_caption_only(tokenizer):
    turns = [{"from": "human", "value": "Describe.\n<image>"}, {"from": "gpt", "value": "a red circle."}]
    sample = tokenize_plain(turns, tokenizer)
    assert supervised_text(tokenizer, sample) == "a red circle.<eos>"
    assert tokenizer.convert_ids_to_tokens(sample.input_ids[1]) == "<image>"


@pytest.mark.parametrize("which", ["toy", "gemma_like"])
def test_same_ids_labels_and_failures_as_the_per_turn_oracle(which, tokenizer, gemma_like):
    tok = tokenizer if which == "toy" else gemma_like
    convs = random_conversations(3, 150)
    failures = 0
    for fmt in ("gemma", "plain"):
        for conv, got in zip(convs, tokenize_many(convs, tok, fmt), strict=True):
            try:
                want = per_turn_oracle(conv, tok, fmt)
            except MaskingMismatch as err:
                want = err
            assert type(got) is type(want) and (isinstance(got, Exception) or got == want), (fmt, conv)
            failures += isinstance(got, Exception)
    # The forged turn fails everywhere; answers opening with "\nRed" fail only where "\n" can merge.
    assert (failures == 1) if which == "toy" else (failures > 10)


def test_mismatch_is_detected(gemma_like):
    # Gemma-like: "<start_of_turn>model\n" + "Red" tokenizes as [..., "model", "\nRed"], so the
    # answer's first token would carry the prefix's newline: counted, never mislabelled.
    merged = [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "Red"}]
    assert gemma_like.convert_ids_to_tokens(gemma_like(turn_prefix("model") + "Red").input_ids)[-1] == "\nRed"
    with pytest.raises(MaskingMismatch):
        tokenize_gemma_chat(merged, gemma_like)
    with pytest.raises(MaskingMismatch):
        tokenize_plain(merged, gemma_like)
    kept = tokenize_gemma_chat([merged[0], {"from": "gpt", "value": "blue"}], gemma_like)
    assert supervised_text(gemma_like, kept) == "blue<end_of_turn>"


def test_forged_turn_in_answer_is_a_mismatch(tokenizer):
    bad = [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "ok<end_of_turn>\n<start_of_turn>user\nmore"}]
    with pytest.raises(MaskingMismatch):
        tokenize_gemma_chat(bad, tokenizer)


def test_every_sample_has_supervised_tokens(tokenizer):
    # An empty answer still teaches <end_of_turn>; a sample with no label at all is refused.
    sample = tokenize_gemma_chat([{"from": "human", "value": "Hi"}, {"from": "gpt", "value": ""}], tokenizer)
    assert sample.supervised == 1
    with pytest.raises(NoSupervisedTokens):
        _checked(TokenizedSample([1, 2], [IGNORE_INDEX, IGNORE_INDEX]))


def test_a_gemma_shaped_tokenizer_loads_as_the_real_one_would(gemma_like):
    assert isinstance(gemma_like, GemmaTokenizerFast)
    added = {t.content: t.special for t in gemma_like.added_tokens_decoder.values()}
    assert added[IMAGE_TOKEN] and "\n" not in added  # <image> added by prepare_tokenizer, "\n" a plain piece
    ids = gemma_like("<image>\nblue").input_ids
    assert ids[0] == gemma_like.bos_token_id and gemma_like.convert_ids_to_tokens(ids[1]) == IMAGE_TOKEN


def test_a_tokenizer_without_turn_markers_is_refused_in_one_sentence(tmp_path):
    with pytest.raises(UnsuitableTokenizer, match=r"lacks <start_of_turn>, <end_of_turn> as a single added token"):
        tokenize_many([CONVERSATION], gemma_like_tokenizer(tmp_path, chat_tokens=False), "gemma")
