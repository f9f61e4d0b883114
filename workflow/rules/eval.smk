# One job per cell and benchmark: greedy answers, per-question records, the official metric.
# vqav2_testdev has no public answers: its job also writes submission.json (the EvalAI upload)
# and its metrics.json says "scored": false.
# `eval_blind` is the blind-image control: the same questions with every image replaced by a
# blank one of the tower's mean colour (config eval.blind_control lists the benchmarks).


rule evaluate_benchmark:
    input:
        benchmark_inputs,
        model="results/cells/{cell}/model",
    output:
        samples="results/cells/{cell}/{evaluation}/{benchmark}/samples.jsonl",
        metrics="results/cells/{cell}/{evaluation}/{benchmark}/metrics.json",
    wildcard_constraints:
        evaluation="eval|eval_blind",
    params:
        settings=lambda w: settings(dict(batch_size=config["eval"]["batch_size"], seed=config["eval"].get("seed", 0),
                                         **config["eval"]["benchmarks"][w.benchmark])),
        blind=lambda w: "--blind" if w.evaluation == "eval_blind" else "",
    conda:
        "../../envs/core.yaml"
    log:
        "logs/{evaluation}/{cell}/{benchmark}.log",
    benchmark:
        "benchmarks/{evaluation}/{cell}/{benchmark}.tsv"
    shell:
        "llava-gemma evaluate --model {input.model} --benchmark {wildcards.benchmark} {params.blind}"
        " --data data/raw/benchmarks/{wildcards.benchmark} --out results/cells/{wildcards.cell}/{wildcards.evaluation}/{wildcards.benchmark}"
        " --settings '{params.settings}' > {log} 2>&1"
