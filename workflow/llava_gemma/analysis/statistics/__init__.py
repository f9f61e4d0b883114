"""The effect statistics: per-question outcomes, factor effects with clustered intervals, interactions,
Holm's adjustment, replicates, and the simulated studies that check coverage."""
