"""Prepared samples for training: memory-mapped Parquet rows and a batch collator.

Rows stay in Arrow buffers (not Python objects), so data-loader workers share them. The collator
expands the one ``<image>`` token of a row into the tower's image-token count, pads the image to
a square of the tower's mean colour (LLaVA-1.5's ``pad`` aspect mode) and runs the tower's
image processor, so the prepared data serve every tower and both LM sizes. On HPU it pads each
batch to one of a few bucket lengths, so graphs are compiled a few times rather than per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from llava_gemma.model.images import load_padded
from llava_gemma.train.masking import IGNORE_INDEX


def image_rows(images) -> np.ndarray:
    """Which rows of a prepared ``image`` column (an Arrow string array) name an image: text-only
    rows hold null or an empty string."""
    return pc.fill_null(pc.greater(pc.utf8_length(images), 0), False).to_numpy(zero_copy_only=False).astype(bool)


class PreparedDataset(torch.utils.data.Dataset):
    """Rows of ``data.parquet``; images whose content was converted (a GIF saved as .jpg) are read
    from the ``converted/`` folder that preparation wrote beside it."""

    def __init__(self, parquet_path: str | Path, image_root: str | Path, sources: Sequence[str] | None = None):
        parquet_path = Path(parquet_path)
        table = pq.read_table(parquet_path, memory_map=True)
        if sources:  # a level's subset of the mix (instruct_sources), by the prepared `source` column
            known = set(table.column("source").unique().to_pylist())
            missing = sorted(set(sources) - known)
            if missing:
                raise ValueError(f"instruct_sources {missing} are not in {parquet_path} (its sources: "
                                 f"{', '.join(sorted(known))}); fix the level's instruct_sources.")
            table = table.filter(pc.is_in(table.column("source"), value_set=pa.array(list(sources))))
        self.image_root = Path(image_root)
        self.converted_root = parquet_path.parent / "converted"
        self.input_ids = table.column("input_ids").combine_chunks()
        self.labels = table.column("labels").combine_chunks()
        self.images = table.column("image").combine_chunks()  # Arrow strings, not 665k Python objects
        self.converted = (table.column("converted").combine_chunks() if "converted" in table.column_names
                          else None)
        self.lengths = table.column("length").to_numpy()

    def __len__(self) -> int:
        return len(self.lengths)

    def has_image(self) -> np.ndarray:
        """Which rows are image samples (the rest are text-only), for grouping batches by modality."""
        return image_rows(self.images)

    def token_lengths(self, image_tokens: int) -> np.ndarray:
        """Tokens of each sample once its one ``<image>`` becomes ``image_tokens`` tokens (the prepared
        ``length`` counts the largest tower's)."""
        return pc.list_value_length(self.input_ids).to_numpy().astype(np.int64) + self.has_image() * (image_tokens - 1)

    def supervised_counts(self) -> np.ndarray:
        """Supervised labels of each sample that a position predicts (its first label never is: the shift)."""
        offsets = self.labels.offsets.to_numpy()
        supervised = (self.labels.values.to_numpy(zero_copy_only=False) != IGNORE_INDEX).astype(np.int64)
        running = np.concatenate([[0], np.cumsum(supervised)])
        nonempty = offsets[1:] > offsets[:-1]
        firsts = np.where(nonempty, supervised[np.minimum(offsets[:-1], max(len(supervised) - 1, 0))], 0) \
            if len(supervised) else np.zeros(len(self), dtype=np.int64)
        return running[offsets[1:]] - running[offsets[:-1]] - firsts

    def image_path(self, i: int) -> str | None:
        image = self.images[i].as_py()
        if not image:
            return None
        converted = self.converted is not None and self.converted[i].as_py()
        return str((self.converted_root if converted else self.image_root) / image)

    def __getitem__(self, i: int) -> dict:
        return {
            "input_ids": self.input_ids[i].values.to_numpy(),
            "labels": self.labels[i].values.to_numpy(),
            "image_path": self.image_path(i),
        }


def padded_width(longest: int, buckets: Sequence[int] | None) -> int:
    """The batch width: the longest row, or the smallest bucket that holds it (static shapes on HPU)."""
    if not buckets:
        return longest
    fitting = [b for b in buckets if b >= longest]
    if not fitting:
        raise ValueError(f"a batch row of {longest} tokens is longer than the largest length bucket "
                         f"{max(buckets)}; add a bucket of at least data.max_length to train.length_buckets.")
    return min(fitting)


class LlavaCollator:
    """Right-pads a batch (to its longest row, or to a length bucket); image tokens expanded and
    masked; ``pixel_values`` for image rows only."""

    def __init__(self, image_processor, image_token_id: int, image_tokens: int, pad_token_id: int,
                 length_buckets: Sequence[int] | None = None):
        self.image_processor = image_processor
        self.image_token_id = image_token_id
        self.image_tokens = image_tokens
        self.pad_token_id = pad_token_id
        self.length_buckets = tuple(sorted(length_buckets)) if length_buckets else None

    def expand(self, ids: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        where = np.flatnonzero(ids == self.image_token_id)
        if len(where) == 0:
            return ids, labels
        at = int(where[0])
        ids = np.concatenate([ids[:at], np.full(self.image_tokens, self.image_token_id), ids[at + 1:]])
        labels = np.concatenate([labels[:at], np.full(self.image_tokens, IGNORE_INDEX), labels[at + 1:]])
        return ids, labels

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        expanded = [self.expand(r["input_ids"], r["labels"]) for r in rows]
        width = padded_width(max(len(ids) for ids, _ in expanded), self.length_buckets)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (ids, lab) in enumerate(expanded):
            input_ids[i, : len(ids)] = torch.from_numpy(ids.astype(np.int64))
            labels[i, : len(lab)] = torch.from_numpy(lab.astype(np.int64))
            attention[i, : len(ids)] = 1
        batch = {"input_ids": input_ids, "labels": labels, "attention_mask": attention}
        images = [load_padded(r["image_path"], self.image_processor) for r in rows if r["image_path"]]
        if images:
            batch["pixel_values"] = self.image_processor(images, return_tensors="pt").pixel_values
        return batch
