# LLaVA-Gemma ablation study: data -> stage 1 (connector) -> stage 2 (cells) -> eval -> report.
#   snakemake --cores N                          # the paper study (config.yaml)
#   snakemake --cores 2 --configfile toy.yaml    # the embedded toy study
from snakemake.utils import min_version

min_version("9.0")


# The toy study passes its own complete config; merging it over config.yaml would mix the grids.
if not config:

    configfile: "config.yaml"


# The HTML report's front page (`snakemake --report results/report.html`); the run's metadata is in results/report/study.csv.
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/toy.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        report_targets(),
    default_target: True
