# Raw data and backbones in, prepared (filtered, tokenized) Parquet out.

# Jobs that need the network (the hub, HF_TOKEN, the URL hosts) run where snakemake runs: on a cluster
# profile that is the submitting host, since compute nodes often have no internet and no token.
localrules:
    check_sources,
    download_file,
    download_folder,
    download_model,
    fetch_ocr_vqa_images,
    await_manual_download,


# The preflight: before any hub download, refuse an unpinned source (unless allow_unpinned) and a gated repo
# without HF_TOKEN, each in one sentence, and record the commit every hub source is read at.
rule check_sources:
    output:
        SOURCES_JSON,
    params:
        settings=settings(dict(sources=HUB_SOURCES, allow_unpinned=config.get("allow_unpinned", False))),
    conda:
        "../../envs/core.yaml"
    log:
        "logs/check_sources.log",
    shell:
        "llava-gemma check-sources --out {output} --settings '{params.settings}' > {log} 2>&1"


rule download_file:
    input:
        unpack(hub_download_inputs),
    output:
        "data/raw/{path}",
    wildcard_constraints:
        path=_alternatives(downloads_of_kind("file")),
    params:
        source=lambda w: settings(config["downloads"][w.path]),
        sources=lambda w, input: f"--sources {input.sources}" if "sources" in input.keys() else "",
    conda:
        "../../envs/core.yaml"
    log:
        "logs/download/{path}.log",
    benchmark:
        "benchmarks/download/{path}.tsv"
    retries: 2
    shell:
        "llava-gemma download --out {output} {params.sources} --settings '{params.source}' > {log} 2>&1"


# A hub folder (MMVP's 300 images) in one job: one snapshot instead of a job per file.
rule download_folder:
    input:
        unpack(hub_download_inputs),
    output:
        directory("data/raw/{path}"),
    wildcard_constraints:
        path=_alternatives(downloads_of_kind("folder")),
    params:
        source=lambda w: settings(config["downloads"][w.path]),
        sources=lambda w, input: f"--sources {input.sources}" if "sources" in input.keys() else "",
    conda:
        "../../envs/core.yaml"
    log:
        "logs/download/{path}.log",
    benchmark:
        "benchmarks/download/{path}.tsv"
    retries: 2
    shell:
        "llava-gemma download --out {output} {params.sources} --settings '{params.source}' > {log} 2>&1"


rule download_model:
    input:
        sources=ancient(SOURCES_JSON),
    output:
        directory("data/models/{model}"),
    wildcard_constraints:
        model=_alternatives(models_from("hub")),
    params:
        repo=lambda w: STUDY.model_source(w.model)["hub"],
        source=lambda w: settings(STUDY.model_source(w.model)),
    conda:
        "../../envs/core.yaml"
    log:
        "logs/download_model/{model}.log",
    benchmark:
        "benchmarks/download_model/{model}.tsv"
    shell:
        "llava-gemma download-model --repo {params.repo} --out {output} --sources {input.sources}"
        " --settings '{params.source}' > {log} 2>&1"


# A checkpoint folder on disk (`local:`), e.g. the toy study's LMs shipped in models/: copied into
# data/models/ like a hub download. A relative folder is read from the repository root.
rule install_local_model:
    input:
        lambda w: local_model_folder(w.model),
    output:
        directory("data/models/{model}"),
    wildcard_constraints:
        model=_alternatives(models_from("local")),
    conda:
        "../../envs/core.yaml"
    log:
        "logs/install_model/{model}.log",
    benchmark:
        "benchmarks/install_model/{model}.tsv"
    shell:
        "llava-gemma install-model --folder {input} --out {output} > {log} 2>&1"


rule extract_archive:
    input:
        "data/raw/{archive}",
    output:
        "data/raw/{archive}.extracted.json",
    wildcard_constraints:
        archive=_alternatives(config.get("extract", {})),
    params:
        into=lambda w: "data/raw/" + config["extract"][w.archive]["into"],
        spec=lambda w: settings(config["extract"][w.archive]),
    conda:
        "../../envs/core.yaml"
    log:
        "logs/extract/{archive}.log",
    benchmark:
        "benchmarks/extract/{archive}.tsv"
    shell:
        "llava-gemma extract --archive {input} --into {params.into} --out {output}"
        " --settings '{params.spec}' > {log} 2>&1"


rule fetch_ocr_vqa_images:
    input:
        unpack(ocr_vqa_inputs),
    output:
        OCR_VQA_REPORT,
    params:
        into=OCR_VQA_IMAGES,
        dataset_json=lambda w, input: f"--dataset_json {input.dataset_json}" if "dataset_json" in input.keys() else "",
        settings=settings(config.get("ocr_vqa", {})),
    conda:
        "../../envs/core.yaml"
    log:
        "logs/fetch_ocr_vqa_images.log",
    benchmark:
        "benchmarks/fetch_ocr_vqa_images.tsv"
    retries: 1
    shell:
        "llava-gemma fetch-ocr-vqa --mix {input.mix} --into {params.into} --out {output} {params.dataset_json}"
        " --settings '{params.settings}' > {log} 2>&1"


rule await_manual_download:
    output:
        "data/raw/{manual}",
    wildcard_constraints:
        manual=_alternatives(manual_downloads()),
    conda:
        "../../envs/core.yaml"
    log:
        "logs/manual/{manual}.log",
    shell:
        "echo 'data/raw/{wildcards.manual} must be placed by hand: OCR-VQA publishes dataset.json on Google Drive"
        " (https://ocr-vqa.github.io). Put it there, name a copy under `downloads` in the config, or set"
        " ocr_vqa.source: hub.' | tee {log} >&2; exit 1"


rule prepare_dataset:
    input:
        dataset_inputs,
        tokenizer=f"data/models/{config['tokenizer_from']}",
        towers=expand("data/models/{tower}", tower=STUDY.vision_towers),
    output:
        data="data/prepared/{dataset}/data.parquet",
        report="data/prepared/{dataset}/filter_report.json",
    params:
        records=lambda w: dataset_records(w.dataset),
        images=lambda w: f"data/raw/{DATASETS[w.dataset]['raw']}/{DATASETS[w.dataset]['images']}",
        format=lambda w: DATASETS[w.dataset]["format"],
        source=lambda w: DATASETS[w.dataset]["source"],
        settings=settings(config["data"]),
    threads: 2
    conda:
        "../../envs/core.yaml"
    log:
        "logs/prepare/{dataset}.log",
    benchmark:
        "benchmarks/prepare/{dataset}.tsv"
    shell:
        "llava-gemma prepare --records {params.records} --image_root {params.images} --tokenizer {input.tokenizer}"
        " --towers {input.towers} --workers {threads} --format {params.format} --source {params.source}"
        " --out data/prepared/{wildcards.dataset} --settings '{params.settings}' > {log} 2>&1"
