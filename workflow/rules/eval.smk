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
#
# Either job runs through `llava-gemma launch` on `tasks` ranks (profiles set it; 1 by default): the
# ranks share the questions out batch by batch and rank 0 merges (eval/answers.py). Answers are kept
# batch by batch in results/work/, beside the declared outputs, so a killed job resumes there.

EVAL_LAUNCH = (
    f"llava-gemma launch --backend {config['train']['backend']} --tasks {{resources.tasks}}"
    " --nodes 1 --cpus_per_task {resources.cpus_per_task} --"
)


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
        resources:
            tasks=1,
            cpus_per_task=1,
        conda:
            "../../envs/core.yaml"
        log:
            "logs/eval/{cell}.log",
        benchmark:
            "benchmarks/eval/{cell}.tsv"
        shell:
            EVAL_LAUNCH + " evaluate-cell --model {input.model} --data_root data/raw/benchmarks"
            " --out results/cells/{wildcards.cell}/eval --blind_out results/cells/{wildcards.cell}/eval_blind"
            " --work results/work/eval_cell/{wildcards.cell}"
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
        resources:
            tasks=1,
            cpus_per_task=1,
        conda:
            "../../envs/core.yaml"
        log:
            "logs/{evaluation}/{cell}/{benchmark}.log",
        benchmark:
            "benchmarks/{evaluation}/{cell}/{benchmark}.tsv"
        shell:
            EVAL_LAUNCH + " evaluate --model {input.model} --benchmark {wildcards.benchmark} {params.blind}"
            " --data data/raw/benchmarks/{wildcards.benchmark} --out results/cells/{wildcards.cell}/{wildcards.evaluation}/{wildcards.benchmark}"
            " --work results/work/{wildcards.evaluation}/{wildcards.cell}/{wildcards.benchmark}"
            " --settings '{params.settings}' > {log} 2>&1"


# Failed questions (undecodable images, scored as wrong) on the console at the end of a run, one
# line per benchmark; Table 1 and the model cards show them too. Not run by a dry run.
onsuccess:
    import sys

    from llava_gemma.eval.failures import study_failure_lines

    for _line in study_failure_lines(Path("results/cells"), [_run.name for _run in STUDY.runs], BENCHMARKS):
        print(_line, file=sys.stderr)
