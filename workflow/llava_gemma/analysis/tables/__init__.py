"""The report's tables and pages: Table 1 and its comparison with the paper, the blind-image control,
speed, the design page, model cards and the study's metadata."""
