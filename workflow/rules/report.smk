# Tables and figures from every cell's training and evaluation outputs; captions in workflow/report/.
# `snakemake --report results/report.html` collects every output marked with report().


# Report rules read small files and write tables and plots: on a cluster they run beside Snakemake
# itself rather than waiting in the queue. Relevancy maps load a model and stay cluster jobs.
localrules:
    write_design,
    make_table1,
    make_blind_control_table,
    fit_factor_effects,
    make_speed_table,
    plot_training_loss,
    summarise_data_filter,
    plot_relevancy,
    write_model_card,
    describe_study,


# The design before anything trains: the chosen cells, their aliasing and resolution (issue 17). It needs no
# input, and its priority puts it first, so a wrong design shows before hours of training.
rule write_design:
    output:
        report("results/report/design.md", caption="../report/design.rst", category="Study"),
    params:
        # Factors as [name, levels] pairs: settings are written with sorted keys, and their order gives the letters.
        settings=settings(dict(factors=[[f.name, list(f.levels)] for f in STUDY.factors],
                               design=config.get("design", "full"), replicates=STUDY.replicates,
                               runs=[c.name for c in CELLS.values()])),
    priority: 1000
    conda:
        "../../envs/core.yaml"
    log:
        "logs/report/design.log",
    shell:
        "llava-gemma design --out {output} --settings '{params.settings}' > {log} 2>&1"


rule make_table1:
    input:
        all_metrics(),
    output:
        csv=report("results/report/table1.csv", caption="../report/table1.rst", category="Table 1"),
        html=report("results/report/table1.html", caption="../report/table1_html.rst", category="Table 1"),
        md="results/report/table1.md",
        tex="results/report/table1.tex",
        paper=report("results/report/table1_vs_paper.csv", caption="../report/table1_vs_paper.rst",
                     category="Table 1"),
        paper_md="results/report/table1_vs_paper.md",
    params:
        settings=settings(dict(cells=report_cells(), benchmarks=BENCHMARKS, sources=paper_sources())),
    conda:
        "../../envs/core.yaml"
    log:
        "logs/report/table1.log",
    benchmark:
        "benchmarks/report/table1.tsv"
    shell:
        "llava-gemma report --cells_dir results/cells --out results/report --settings '{params.settings}' > {log} 2>&1"


rule make_blind_control_table:
    input:
        all_metrics(),
        blind_metrics(),
    output:
        csv=report("results/report/blind_control.csv", caption="../report/blind_control.rst", category="Controls"),
        md="results/report/blind_control.md",
    params:
        settings=settings(dict(cells=report_cells(), benchmarks=BLIND_BENCHMARKS)),
    conda:
        "../../envs/core.yaml"
    log:
        "logs/report/blind_control.log",
    benchmark:
        "benchmarks/report/blind_control.tsv"
    shell:
        "llava-gemma blind-report --cells_dir results/cells --out results/report --settings '{params.settings}'"
        " > {log} 2>&1"


rule fit_factor_effects:
    input:
        all_samples(),
    output:
        csv=report("results/report/effects.csv", caption="../report/effects_table.rst", category="Factor effects"),
        png=report("results/report/effects.png", caption="../report/effects.rst", category="Factor effects"),
    params:
        settings=settings(dict(cells=report_cells(), benchmarks=SCORED_BENCHMARKS, design=config.get("design", "full"),
                               factors=[[f.name, list(f.levels)] for f in STUDY.factors])),
    conda:
        "../../envs/core.yaml"
    log:
        "logs/report/effects.log",
    benchmark:
        "benchmarks/report/effects.tsv"
    shell:
        "llava-gemma effects --cells_dir results/cells --out results/report --settings '{params.settings}' > {log} 2>&1"


rule make_speed_table:
    input:
        training_metrics(),
        all_metrics(),
    output:
        csv=report("results/report/speed.csv", caption="../report/speed_table.rst", category="Speed"),
        relative=report("results/report/speed_relative.csv", caption="../report/speed_relative.rst",
                        category="Speed"),
        png=report("results/report/speed.png", caption="../report/speed.rst", category="Speed"),
    params:
        settings=settings(dict(cells=report_cells(), benchmarks=BENCHMARKS)),
    conda:
        "../../envs/core.yaml"
    log:
        "logs/report/speed.log",
    benchmark:
        "benchmarks/report/speed.tsv"
    shell:
        "llava-gemma speed --results_dir results --out results/report --settings '{params.settings}' > {log} 2>&1"


rule plot_training_loss:
    input:
        training_metrics(),
    output:
        report("results/report/loss.png", caption="../report/loss.rst", category="Training"),
    params:
        settings=settings(dict(cells=report_cells())),
    conda:
        "../../envs/core.yaml"
    log:
        "logs/report/loss.log",
    benchmark:
        "benchmarks/report/loss.tsv"
    shell:
        "llava-gemma loss-plot --results_dir results --out results/report --settings '{params.settings}' > {log} 2>&1"


rule summarise_data_filter:
    input:
        expand("data/prepared/{dataset}/filter_report.json", dataset=DATASETS),
    output:
        csv=report("results/report/data_filter.csv", caption="../report/data_filter.rst", category="Training"),
        md="results/report/data_filter.md",
    conda:
        "../../envs/core.yaml"
    log:
        "logs/report/data_filter.log",
    benchmark:
        "benchmarks/report/data_filter.tsv"
    shell:
        "llava-gemma data-filter --prepared_dir data/prepared --out results/report > {log} 2>&1"


# The final model card: the recipe card training wrote into model/README.md plus the cell's metrics with their
# intervals (model-index). A separate output, since a rule must not change train_cell's; README says how to
# put it into the model folder for upload.
rule write_model_card:
    input:
        model="results/cells/{cell}/model",
        metrics=lambda w: expand("results/cells/{cell}/eval/{benchmark}/metrics.json", cell=w.cell,
                                 benchmark=BENCHMARKS),
    output:
        report("results/report/model_cards/{cell}/README.md", caption="../report/model_card.rst",
               category="Model cards", subcategory="{cell}"),
    params:
        card=lambda w: card_settings(w.cell),
    conda:
        "../../envs/core.yaml"
    log:
        "logs/report/model_cards/{cell}.log",
    benchmark:
        "benchmarks/report/model_cards/{cell}.tsv"
    shell:
        "llava-gemma model-card --eval_dir results/cells/{wildcards.cell}/eval --out {output}"
        " --settings '{params.card}' > {log} 2>&1"


# The report's record of the run: study, config files, commit, library versions, date. It waits for every
# metric, so it is made again whenever a result changes.
rule describe_study:
    input:
        all_metrics(),
        [SOURCES_JSON] if HUB_SOURCES else [],
    output:
        report("results/report/study.csv", caption="../report/study.rst", category="Study"),
    params:
        settings=settings(dict(study=config["study"], configfiles=[shown_path(f) for f in workflow.configfiles],
                               cells=list(CELLS), benchmarks=BENCHMARKS,
                               **({"sources": SOURCES_JSON} if HUB_SOURCES else {}))),
        repo=portable_path(workflow.basedir),
    conda:
        "../../envs/core.yaml"
    log:
        "logs/report/study.log",
    benchmark:
        "benchmarks/report/study.tsv"
    shell:
        "llava-gemma describe-study --repo {params.repo} --out {output} --settings '{params.settings}' > {log} 2>&1"


rule compute_relevancy:
    input:
        unpack(relevancy_inputs),
    output:
        "results/report/relevancy/{cell}.json",
    params:
        settings=settings(dict(examples=relevancy_examples())),
    conda:
        "../../envs/core.yaml"
    log:
        "logs/report/relevancy/{cell}.log",
    benchmark:
        "benchmarks/report/relevancy/{cell}.tsv"
    shell:
        "llava-gemma relevancy --model {input.model} --data data/raw/benchmarks --out {output}"
        " --settings '{params.settings}' > {log} 2>&1"


rule plot_relevancy:
    input:
        # Maps illustrate what a cell looks at: its first replicate stands for it.
        expand("results/report/relevancy/{cell}.json", cell=[c.name for c in STUDY.cells]),
    output:
        report("results/report/relevancy.png", caption="../report/relevancy.rst", category="Relevancy maps"),
    conda:
        "../../envs/core.yaml"
    log:
        "logs/report/relevancy.log",
    benchmark:
        "benchmarks/report/relevancy.tsv"
    shell:
        "llava-gemma relevancy-figure --maps {input} --out {output} > {log} 2>&1"
