"""Designed ablations: which cells to train (full, fractional 2^(k-p), explicit) and what they can tell apart."""

from llava_gemma.study.design.designs import Design, select_cells, term_name

__all__ = ["Design", "select_cells", "term_name"]
