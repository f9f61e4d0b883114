# Stage 1 trains one connector per stage-1 run (cells with equal stage-1 settings share one: with the
# paper's grid one per (LM, tower) pair, results/stage1/<lm>_<tower>); stage 2 trains every run of every cell.
# Resumable checkpoints live in results/work/, beside the declared outputs, because Snakemake
# deletes a job's declared outputs before it reruns the job; a rerun resumes from the newest
# complete checkpoint there.
#
# Both rules start through `llava-gemma launch`: one process per device (`tasks` in all, over
# `nodes` nodes). Profiles set these resources per rule (profiles/local, profiles/slurm-gpu,
# profiles/slurm-gaudi); the defaults are config train.devices on one node. One task runs the
# command in the launching process itself, so the toy study takes the same path as a cluster job.

TRAIN_LAUNCH = (
    f"llava-gemma launch --backend {config['train']['backend']} --tasks {{resources.tasks}}"
    " --nodes {resources.nodes} --cpus_per_task {resources.cpus_per_task} --"
)


rule train_connector:
    input:
        lm=lambda w: f"data/models/{STAGE1[w.stage1].language_model}",
        tower=lambda w: f"data/models/{STAGE1[w.stage1].vision_tower}",
        data="data/prepared/pretrain/data.parquet",
    output:
        connector="results/stage1/{stage1}/connector.safetensors",
        metrics="results/stage1/{stage1}/train_metrics.json",
    params:
        settings=lambda w: train_settings("stage1", STAGE1[w.stage1]),
        images=f"data/raw/{DATASETS['pretrain']['raw']}/{DATASETS['pretrain']['images']}",
    priority: lambda w: train_priority(STAGE1[w.stage1])
    resources:
        nodes=1,
        tasks=config["train"]["devices"],
        cpus_per_task=1,
    conda:
        "../../envs/core.yaml"
    log:
        "logs/train_connector/{stage1}.log",
    benchmark:
        "benchmarks/train_connector/{stage1}.tsv"
    shell:
        TRAIN_LAUNCH + " train --stage stage1 --lm {input.lm} --tower {input.tower} --data data/prepared/pretrain"
        " --image_root {params.images} --out results/stage1/{wildcards.stage1}"
        " --work results/work/stage1/{wildcards.stage1} --settings '{params.settings}' > {log} 2>&1"


rule train_cell:
    input:
        unpack(stage2_inputs),
    output:
        model=directory("results/cells/{cell}/model"),
    params:
        settings=lambda w: train_settings("stage2", CELLS[w.cell]),
        images=f"data/raw/{DATASETS['instruct']['raw']}/{DATASETS['instruct']['images']}",
        connector=lambda w, input: f"--connector {input.connector}" if "connector" in input.keys() else "",
        card=lambda w: card_settings(w.cell, evaluation=False),
    priority: lambda w: train_priority(CELLS[w.cell])
    resources:
        nodes=1,
        tasks=config["train"]["devices"],
        cpus_per_task=1,
    conda:
        "../../envs/core.yaml"
    log:
        "logs/train_cell/{cell}.log",
    benchmark:
        "benchmarks/train_cell/{cell}.tsv"
    shell:
        TRAIN_LAUNCH + " train --stage stage2 --lm {input.lm} --tower {input.tower} --data data/prepared/instruct"
        " --image_root {params.images} --out {output.model} --work results/work/cells/{wildcards.cell}"
        " {params.connector} --settings '{params.settings}' > {log} 2>&1"
        # The model card with the recipe, so the folder is a complete checkpoint; write_model_card adds metrics.
        " && llava-gemma model-card --out {output.model}/README.md --settings '{params.card}' >> {log} 2>&1"


# Not part of `all`: five steps of a stage on the configured backend, to check a GPU or Gaudi node
# before the real run, e.g. `snakemake --profile profiles/local results/smoke/stage2/2b_clip/train_metrics.json`.
# Stage 2 starts from a fresh connector, so it needs no stage-1 output; it exercises ZeRO-3 on cuda.
rule smoke_train:
    input:
        lm="data/models/{lm}",
        tower="data/models/{tower}",
        data=lambda w: f"data/prepared/{'pretrain' if w.stage == 'stage1' else 'instruct'}/data.parquet",
    output:
        metrics="results/smoke/{stage}/{lm}_{tower}/train_metrics.json",
    wildcard_constraints:
        stage="stage1|stage2",
    params:
        settings=lambda w: smoke_settings(w.stage),
        dataset=lambda w: "pretrain" if w.stage == "stage1" else "instruct",
        images=lambda w: "data/raw/{0[raw]}/{0[images]}".format(
            DATASETS["pretrain" if w.stage == "stage1" else "instruct"]),
    resources:
        nodes=1,
        tasks=config["train"]["devices"],
        cpus_per_task=1,
    conda:
        "../../envs/core.yaml"
    log:
        "logs/smoke_train/{stage}/{lm}_{tower}.log",
    benchmark:
        "benchmarks/smoke_train/{stage}/{lm}_{tower}.tsv"
    shell:
        TRAIN_LAUNCH + " train --stage {wildcards.stage} --lm {input.lm} --tower {input.tower}"
        " --data data/prepared/{params.dataset} --image_root {params.images}"
        " --out results/smoke/{wildcards.stage}/{wildcards.lm}_{wildcards.tower}"
        " --work results/work/smoke/{wildcards.stage}/{wildcards.lm}_{wildcards.tower}"
        " --settings '{params.settings}' > {log} 2>&1"


# Not part of `all`: the smoke run's answer check (docs/backends.md). The five-step stage-2 checkpoint of
# smoke_train answers the first 20 questions of a benchmark on the evaluation device (through the device's
# own generation path, launched as an evaluation job is) and on the CPU, each in its own process, greedy and
# in fp32; the job fails unless the answers are equal, naming the questions that differ.
SMOKE_BENCHMARK = "pope" if "pope" in BENCHMARKS else BENCHMARKS[0]


rule smoke_device_check:
    input:
        metrics="results/smoke/stage2/{lm}_{tower}/train_metrics.json",
        benchmark=lambda w: inputs_of_benchmark(SMOKE_BENCHMARK),
    output:
        "results/smoke/stage2/{lm}_{tower}/device_check.json",
    params:
        model="results/smoke/stage2/{lm}_{tower}",
        data=f"data/raw/benchmarks/{SMOKE_BENCHMARK}",
    resources:
        nodes=1,
        tasks=1,
        cpus_per_task=1,
    conda:
        "../../envs/core.yaml"
    log:
        "logs/smoke_device_check/{lm}_{tower}.log",
    shell:
        "llava-gemma launch --backend " + config["train"]["backend"] + " --tasks 1 --nodes 1 --"
        " device-answers --model {params.model} --benchmark " + SMOKE_BENCHMARK + " --data {params.data}"
        " --out {params.model}/answers_device.json > {log} 2>&1"
        " && llava-gemma device-answers --device cpu --model {params.model} --benchmark " + SMOKE_BENCHMARK +
        " --data {params.data} --out {params.model}/answers_cpu.json >> {log} 2>&1"
        " && llava-gemma compare-answers --device_answers {params.model}/answers_device.json"
        " --cpu_answers {params.model}/answers_cpu.json --out {output} >> {log} 2>&1"
