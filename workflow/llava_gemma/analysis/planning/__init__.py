"""Cost and memory before spending: ``llava-gemma plan`` and ``estimate``, per-rank memory, and the
power a planned study has."""
