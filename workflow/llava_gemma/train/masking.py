"""Tokenize a LLaVA conversation and put labels on the model's turns only.

Two formats, as LLaVA-1.5 trains:
- ``plain`` (stage 1): ``<bos><image>\\n{caption}<eos>``; the caption and EOS are supervised.
- ``gemma`` (stage 2): Gemma's chat turns; only the text of model turns and their
  ``<end_of_turn>`` carry labels.

The rendered conversation is tokenized once, as the model will see it, and the label mask is
read off the token ids: ``<start_of_turn>``, ``<end_of_turn>`` and ``<image>`` are added tokens,
so the tokenizer always cuts the text at them, and the one boundary it does not cut for sure
(an answer's start, right after ``<start_of_turn>model\\n``) is checked by finding exactly the
prefix's own tokens there. A conversation that does not have that shape (a merge across the
answer's start, a forged turn marker in the text) is a ``MaskingMismatch``, counted by the
caller, never a silently misaligned or fully masked sample. This gives the same ids and labels
as tokenizing each turn alone and checking the concatenation against the whole (the former
method, kept as the oracle in tests/test_masking.py), at half the tokenizer work and without
offsets (``encode_batch_fast``).

Gemma's real tokenizer (256k pieces, unreachable here: no hub) could not be run. What is checked
instead, on a tokenizer of the same shape (GemmaTokenizerFast from a SentencePiece BPE, turn markers
as added tokens, ``<image>`` added by ``prepare_tokenizer``, ``<bos>`` prepended, ``\n`` an ordinary
piece): should its merges join the prefix's ``\n`` to an answer's first characters, those samples
are counted as ``masking_mismatch``, and a source losing too many fails the stage by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerFast

from llava_gemma.errors import UserError
from llava_gemma.model.chat import END_OF_TURN, IMAGE_TOKEN, ROLE_OF_SPEAKER, START_OF_TURN, render_turn, turn_prefix

IGNORE_INDEX = -100


class MaskingMismatch(ValueError):
    """The tokens of the whole conversation do not split cleanly at the turn and answer boundaries."""


class NoSupervisedTokens(ValueError):
    """Every label is masked: the sample would teach nothing."""


class UnsuitableTokenizer(UserError, ValueError):
    pass


@dataclass(frozen=True)
class TokenizedSample:
    input_ids: list[int]
    labels: list[int]

    @property
    def supervised(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


@dataclass(frozen=True)
class ChatLayout:
    """The token ids the masking looks for (found, and checked, once per batch: a few short calls)."""

    bos: int
    eos: int
    start_of_turn: int
    end_of_turn: int
    model_prefix: tuple[int, ...]  # "<start_of_turn>model\n"
    image_head: tuple[int, ...]  # "<bos><image>\n", the unsupervised start of a stage-1 sample

    @staticmethod
    def of(tokenizer) -> ChatLayout:
        added = {tok.content for tok in tokenizer.added_tokens_decoder.values()}
        missing = [t for t in (START_OF_TURN, END_OF_TURN, IMAGE_TOKEN) if t not in added]
        if missing or tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
            raise UnsuitableTokenizer(
                f"the tokenizer of `tokenizer_from` lacks {', '.join(missing) or 'a bos or eos token'} as a single "
                "added token; use Gemma's tokenizer (it has them; prepare_tokenizer adds <image>).")
        return ChatLayout(
            bos=tokenizer.bos_token_id, eos=tokenizer.eos_token_id,
            start_of_turn=tokenizer.convert_tokens_to_ids(START_OF_TURN),
            end_of_turn=tokenizer.convert_tokens_to_ids(END_OF_TURN),
            model_prefix=tuple(_encode(tokenizer, turn_prefix("model"))),
            image_head=(tokenizer.bos_token_id, *_encode(tokenizer, IMAGE_TOKEN + "\n")))


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False).input_ids


def tokenize_plain(conversations: list[dict], tokenizer) -> TokenizedSample:
    """Stage-1 format: the instruction is dropped, the image is followed by its caption."""
    return _raise_if_failed(tokenize_many([conversations], tokenizer, "plain")[0])


def tokenize_gemma_chat(conversations: list[dict], tokenizer) -> TokenizedSample:
    """Stage-2 format: Gemma chat turns, labels on model turns (text + ``<end_of_turn>``)."""
    return _raise_if_failed(tokenize_many([conversations], tokenizer, "gemma")[0])


def tokenize_many(conversations: list[list[dict]], tokenizer, fmt: str) -> list[TokenizedSample | ValueError]:
    """``FORMATS[fmt]`` over many conversations with one tokenizer call in all.

    A failing conversation yields its ``MaskingMismatch``/``NoSupervisedTokens`` in place of a
    sample, so one bad record never stops a batch.
    """
    layout = ChatLayout.of(tokenizer)
    if fmt == "plain":
        texts = [IMAGE_TOKEN + "\n" + turns[1]["value"].strip() for turns in conversations]
        return [_as_value(_assemble_plain, ids, layout)
                for ids in encode_many(tokenizer, texts, add_special_tokens=True)]
    if fmt != "gemma":
        raise ValueError(f"unknown format {fmt!r}; use one of {sorted(FORMATS)}.")
    rendered = [_render(turns) for turns in conversations]
    wholes = encode_many(tokenizer, [text for _, text in rendered], add_special_tokens=True)
    return [_as_value(_assemble_gemma, roles, ids, layout) for (roles, _), ids in zip(rendered, wholes)]


def encode_many(tokenizer, texts: list[str], *, add_special_tokens: bool) -> list[list[int]]:
    """``tokenizer(texts).input_ids``; for a fast tokenizer straight from its Rust backend, which
    gives the same ids without building offsets and attention masks."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if isinstance(tokenizer, PreTrainedTokenizerFast) and backend.truncation is None and backend.padding is None:
        encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
        return [e.ids for e in encode(texts, add_special_tokens=add_special_tokens)]
    return tokenizer(texts, add_special_tokens=add_special_tokens).input_ids


def _render(conversations: list[dict]) -> tuple[list[str], str]:
    roles = [ROLE_OF_SPEAKER[turn["from"]] for turn in conversations]
    return roles, "".join(render_turn(role, turn["value"]) for role, turn in zip(roles, conversations))


def _assemble_plain(ids: list[int], g: ChatLayout) -> TokenizedSample:
    head = len(g.image_head)
    if tuple(ids[:head]) != g.image_head:
        raise MaskingMismatch("caption tokenizes differently after the image token")
    ids.append(g.eos)
    return _checked(TokenizedSample(ids, [IGNORE_INDEX] * head + ids[head:]), supervised=len(ids) - head)


def _assemble_gemma(roles: list[str], ids: list[int], g: ChatLayout) -> TokenizedSample:
    """Labels for the whole conversation's tokens: a model turn's answer through its ``<end_of_turn>``."""
    if not ids or ids[0] != g.bos:
        raise MaskingMismatch("the tokenizer did not start the conversation with <bos>")
    starts = _positions(ids, g.start_of_turn)
    if len(starts) != len(roles):
        raise MaskingMismatch(f"{len(starts)} <start_of_turn> tokens for {len(roles)} turns")
    labels = [IGNORE_INDEX] * len(ids)
    n_prefix = len(g.model_prefix)
    supervised = 0
    for role, start, end in zip(roles, starts, [*starts[1:], len(ids)]):
        if role != "model":
            continue
        answer = start + n_prefix
        stop = _after(ids, g.end_of_turn, answer, end)  # the answer runs through its <end_of_turn>
        if tuple(ids[start:answer]) != g.model_prefix or stop is None or g.end_of_turn in ids[stop:end]:
            raise MaskingMismatch("model turn does not start with its prefix or has not exactly one <end_of_turn>")
        labels[answer:stop] = ids[answer:stop]
        supervised += stop - answer
    return _checked(TokenizedSample(ids, labels), supervised=supervised)


def _after(ids: list[int], token: int, start: int, end: int) -> int | None:
    try:
        return ids.index(token, start, end) + 1
    except ValueError:
        return None


def _positions(ids: list[int], token: int) -> list[int]:
    out, at = [], -1
    try:
        while True:
            at = ids.index(token, at + 1)  # list.index scans in C: no Python loop over every token
            out.append(at)
    except ValueError:
        return out


def _as_value(assemble, *args) -> TokenizedSample | ValueError:
    try:
        return assemble(*args)
    except (MaskingMismatch, NoSupervisedTokens) as err:
        return err


def _raise_if_failed(result: TokenizedSample | ValueError) -> TokenizedSample:
    if isinstance(result, ValueError):
        raise result
    return result


def _checked(sample: TokenizedSample, supervised: int | None = None) -> TokenizedSample:
    if (sample.supervised if supervised is None else supervised) == 0:
        raise NoSupervisedTokens("the conversation has no model tokens to learn from")
    return sample


FORMATS = {"plain": tokenize_plain, "gemma": tokenize_gemma_chat}
