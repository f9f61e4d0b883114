"""Helpers of the SLURM tests (tests/test_slurm.py): the local cluster and what Snakemake reports."""
