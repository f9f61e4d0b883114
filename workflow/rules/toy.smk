# The embedded toy world: it stands in for the downloads and the hub backbones, writing files in
# the same formats and places. These rules exist only when the config has a toy_world section.

if STUDY.is_toy_world:

    rule generate_toy_world:
        output:
            manifest="data/raw/toy_world.json",
            pretrain_records="data/raw/llava_pretrain/chat.json",
            pretrain_images="data/raw/llava_pretrain/images.zip",
            instruct_records="data/raw/llava_instruct/llava_v1_5_mix665k.json",
            instruct_images=directory("data/raw/llava_instruct/images"),
            benchmarks=directory("data/raw/benchmarks"),
            text=directory("data/raw/toy_text"),
        params:
            spec=settings(config["toy_world"]),
        conda:
            "../../envs/core.yaml"
        log:
            "logs/toy/generate_toy_world.log",
        benchmark:
            "benchmarks/toy/generate_toy_world.tsv"
        shell:
            "llava-gemma toy-world --out data/raw --settings '{params.spec}' > {output.manifest} 2> {log}"

    rule pretrain_toy_language_model:
        input:
            rules.generate_toy_world.output.text,
        output:
            directory("data/models/{model}"),
        wildcard_constraints:
            model=_alternatives([m for m in models_from("toy") if m in STUDY.language_models]),
        # The LMs are the longest toy jobs and gate every training job: start them before the towers,
        # so the 7B one does not run alone while the other core waits.
        priority: 1
        params:
            spec=lambda w: settings(STUDY.model_source(w.model)["toy"]),
            seed=config["toy_world"]["seed"],
        conda:
            "../../envs/core.yaml"
        log:
            "logs/toy/pretrain_{model}.log",
        benchmark:
            "benchmarks/toy/pretrain_{model}.tsv"
        shell:
            "llava-gemma pretrain-toy-lm --raw data/raw --out {output} --seed {params.seed}"
            " --settings '{params.spec}' > {log} 2>&1"

    # A tower renders its own scenes from the seed (toy/towers.py); it needs only the toy tokenizer.
    rule pretrain_toy_vision_tower:
        input:
            rules.generate_toy_world.output.text,
        output:
            directory("data/models/{model}"),
        wildcard_constraints:
            model=_alternatives([m for m in models_from("toy") if m in STUDY.vision_towers]),
        params:
            spec=lambda w: settings(STUDY.model_source(w.model)["toy"]),
            seed=config["toy_world"]["seed"],
        conda:
            "../../envs/core.yaml"
        log:
            "logs/toy/pretrain_{model}.log",
        benchmark:
            "benchmarks/toy/pretrain_{model}.tsv"
        shell:
            "llava-gemma pretrain-toy-tower --raw data/raw --out {output} --seed {params.seed}"
            " --settings '{params.spec}' > {log} 2>&1"
