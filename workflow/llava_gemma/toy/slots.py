"""The scene as the tower will show it: one input vector per grid cell, for the toy LMs' look-up.

A toy tower cuts a 48 px scene into 3 x 3 patches of 16 px, one per grid cell, so a cell reaches the
LM as 9 image tokens in reading order, each carrying its cell's object whole: size, colour and shape
in one vector (a linear read-out finds each at 0.96-1.00 from the toy towers' patch features;
docs/toy-study.md). A caption spreads the same facts over words ("a large red square on the left"),
and the LMs learned to answer from captions by finding the shape's word and reading the words
before it. That route does not exist among image tokens, so the cells answered colour, size and
place from the shape's typical values (issue 27).

Slot look-ups give the LM the image's layout before it meets an image: the 9 positions where the
image tokens will stand hold, per cell, the sum of its words' embeddings (size + colour + shape, or
"word" + the written word, or zeros for an empty cell); position is the slot's index, as it is the
patch's. The connector then has one linear-sized job, tower patch -> that sum, and stage 1's
captions teach it (the LM learns to say the caption from slots too).
"""

from __future__ import annotations

import torch

from . import scenes as sc

N_SLOTS = 9  # 3 x 3 grid cells = the toy towers' patches (48 px, 16 px patches, CLS dropped)


def cell_words(scene: sc.Scene) -> list[list[str]]:
    """The words each grid cell holds, in reading order (the patches' order); [] for an empty cell."""
    cells: list[list[str]] = [[] for _ in range(N_SLOTS)]
    for o in scene.objects:
        cells[o.cell] = [o.size, o.color, o.shape]
    if scene.text and scene.text_cell is not None:
        cells[scene.text_cell] = ["word", f'"{scene.text}"']
    return cells


def _word_ids(tokenizer, word: str) -> list[int]:
    # As the word stands in a caption: after a space.
    return tokenizer.encode(" " + word, add_special_tokens=False)


def slot_vectors(embedding: torch.nn.Embedding, tokenizer, scenes: list[sc.Scene]) -> torch.Tensor:
    """(len(scenes), 9, hidden): per cell, the sum over its words of the mean of each word's token embeddings.

    Built from the LM's own (trained) embedding table, so the slots move with it during training."""
    rows = []
    for scene in scenes:
        cells = []
        for words in cell_words(scene):
            vec = embedding.weight.new_zeros(embedding.weight.shape[1])
            for word in words:
                vec = vec + embedding(torch.tensor(_word_ids(tokenizer, word))).mean(0)
            cells.append(vec)
        rows.append(torch.stack(cells))
    return torch.stack(rows)


def embed_with_slots(model, tokenizer, input_ids: torch.Tensor, scenes: list[sc.Scene | None],
                     image_token_id: int) -> torch.Tensor:
    """``inputs_embeds`` for ``input_ids`` whose rows with a scene hold 9 ``image_token_id`` placeholders."""
    embedding = model.get_input_embeddings()
    embeds = embedding(input_ids)
    rows = [i for i, scene in enumerate(scenes) if scene is not None]
    if not rows:
        return embeds
    slots = slot_vectors(embedding, tokenizer, [scenes[i] for i in rows])
    at = input_ids[rows] == image_token_id
    if not bool((at.sum(1) == N_SLOTS).all()):
        raise ValueError(f"every slot example needs exactly {N_SLOTS} image placeholders in its ids")
    embeds = embeds.clone()
    sub = embeds[rows]
    sub[at] = slots.reshape(-1, slots.shape[-1]).to(sub.dtype)
    embeds[rows] = sub
    return embeds
