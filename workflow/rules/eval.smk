# Greedy answers, per-question records and the official metric of every cell on every benchmark:
# results/cells/{cell}/{eval,eval_blind}/{benchmark}/{samples.jsonl,metrics.json}.
# `eval_blind` is the blind-image control: the same questions with every image replaced by a
# blank one of the tower's mean colour (config eval.blind_control lists the benchmarks).
# vqav2_testdev has no public answers: its job also writes submission.json (the EvalAI upload)
# and its metrics.json says "scored": false.
#
# eval.one_job_per picks the job size. "benchmark" (default): one job per cell and benchmark, so a
# changed benchmark setting reruns only that benchmark. "cell": one job per cell that loads the model
# once and answers all its benchmarks and their blind controls; it saves the python/torch/transformers
# start-up (about 9 s of CPU per job on 2 cores), which dominates a toy evaluation of a few seconds.


def eval_settings(names, **extra):
    e = config["eval"]
    return settings(dict(batch_size=e["batch_size"], seed=e.get("seed", 0),
                         benchmarks={name: e["benchmarks"][name] for name in names}, **extra))


if config["eval"].get("one_job_per", "benchmark") == "cell":

    def cell_eval_outputs(evaluation, names):
        return expand("results/cells/{{cell}}/{evaluation}/{benchmark}/{file}", evaluation=evaluation,
                      benchmark=names, file=("samples.jsonl", "metrics.json"))

    rule evaluate_cell:
        input:
            cell_benchmark_inputs(BENCHMARKS),
            model="results/cells/{cell}/model",
        output:
            cell_eval_outputs("eval", BENCHMARKS),
            cell_eval_outputs("eval_blind", BLIND_BENCHMARKS),
        params:
            settings=eval_settings(BENCHMARKS, blind_control=BLIND_BENCHMARKS),
        conda:
            "../../envs/core.yaml"
        log:
            "logs/eval/{cell}.log",
        benchmark:
            "benchmarks/eval/{cell}.tsv"
        shell:
            "llava-gemma evaluate-cell --model {input.model} --data_root data/raw/benchmarks"
            " --out results/cells/{wildcards.cell}/eval --blind_out results/cells/{wildcards.cell}/eval_blind"
            " --settings '{params.settings}' > {log} 2>&1"

else:

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
            settings=lambda w: settings(dict(batch_size=config["eval"]["batch_size"],
                                             seed=config["eval"].get("seed", 0),
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
