"""Tensors of packed micro-batches: several whole samples per row, positions restarting per sample.

Each row is ``row_length`` tokens: its samples one after the other (``<image>`` expanded as in the
unpacked collator), then padding. ``position_ids`` restart at 0 at every sample and at the padding,
which is how the language model learns where a sample starts: model/packed_attention.py turns them
into a block-diagonal causal mask, so no token sees another sample's. The first label of every
sample is ignored: the hidden state before it belongs to the previous sample (unpacked, no position
predicts it either). ``pixel_values`` hold the micro-batch's images in the order their samples
appear, row by row, which is the order LLaVA scatters image features into ``<image>`` positions, so
every image lands in its own sample. ``attention_mask`` stays the 2-D real-token mask (1 on sample
tokens, 0 on padding): throughput counting reads it, and the mask hook replaces it.
"""

from __future__ import annotations

import numpy as np
import torch

from llava_gemma.model.images import load_padded
from llava_gemma.train.dataset import LlavaCollator
from llava_gemma.train.masking import IGNORE_INDEX


class PackedCollator:
    """Turns one rank's share of a step (train/packing.py) into its micro-batches of fixed shape."""

    def __init__(self, collator: LlavaCollator, row_length: int, rows: int):
        self.collator = collator  # its image processor, token ids and ``<image>`` expansion
        self.row_length = row_length
        self.rows = rows

    def micro_batch(self, rows: list[list[dict]]) -> dict[str, torch.Tensor]:
        shape = (self.rows, self.row_length)
        input_ids = torch.full(shape, self.collator.pad_token_id, dtype=torch.long)
        labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros(shape, dtype=torch.long)
        positions = torch.zeros(shape, dtype=torch.long)
        images = []
        for r, samples in enumerate(rows):
            at = 0
            for sample in samples:
                ids, lab = self.collator.expand(sample["input_ids"], sample["labels"])
                n = len(ids)
                if at + n > self.row_length:
                    raise ValueError(f"packed row overflow: {at + n} tokens in a row of {self.row_length}")
                input_ids[r, at:at + n] = torch.from_numpy(ids.astype(np.int64))
                labels[r, at:at + n] = torch.from_numpy(lab.astype(np.int64))
                labels[r, at] = IGNORE_INDEX
                attention[r, at:at + n] = 1
                positions[r, at:at + n] = torch.arange(n)
                at += n
                if sample["image_path"]:
                    images.append(load_padded(sample["image_path"], self.collator.image_processor))
            positions[r, at:] = torch.arange(self.row_length - at)  # the padding: a segment of its own
        batch = {"input_ids": input_ids, "labels": labels, "attention_mask": attention, "position_ids": positions}
        if images:
            batch["pixel_values"] = self.collator.image_processor(images, return_tensors="pt").pixel_values
        return batch

    def __call__(self, parts: list[dict]) -> dict:
        if len(parts) != 1:
            raise ValueError(f"packed training reads one step part per batch, got {len(parts)}")
        part = parts[0]
        micro = []
        for rows in part["micro_batches"]:
            rows = list(rows) + [[]] * (self.rows - len(rows))  # a rank's last micro-batch may be short
            micro.append(self.micro_batch(rows))
        return {"micro_batches": micro, "step_items": torch.tensor(part["step_items"], dtype=torch.long)}
