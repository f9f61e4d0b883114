"""The loopback mirror answers the unchanged huggingface_hub and the pipeline's downloaders as the real sources do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest
import yaml

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def mirror(rehearsal_mirror):
    from llava_gemma.rehearsal.build import EXPECTED
    from llava_gemma.rehearsal.server import MirrorServer

    server = MirrorServer(rehearsal_mirror).start()
    yield rehearsal_mirror, server, {"questions": json.loads((rehearsal_mirror / EXPECTED).read_text())}
    server.stop()


@pytest.fixture
def env(mirror, monkeypatch):
    _, server, _ = mirror
    for key, value in server.environment().items():
        monkeypatch.setenv(key, value)
    return server


def cli(*args: str) -> dict:
    """One CLI command in a fresh process, as a rule runs it (huggingface_hub reads HF_ENDPOINT at import)."""
    done = subprocess.run([sys.executable, "-m", "llava_gemma", *args], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
    if done.returncode:
        raise CliError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed")
    return json.loads(done.stdout)


class CliError(RuntimeError):
    pass


def download_model(repo, out):
    cli("download-model", "--repo", repo, "--out", str(out))
    return out


def download_hub_file(repo, file, out):
    cli("download", "--out", str(out), "--settings", json.dumps({"hub": repo, "file": file, "repo_type": "dataset"}))
    return out


def test_clip_arrives_as_safetensors_converted_from_its_bin(env, tmp_path):
    from transformers import CLIPVisionModel

    out = download_model("openai/clip-vit-large-patch14-336", tmp_path / "clip")
    files = sorted(p.name for p in out.iterdir() if p.is_file())
    assert files == ["config.json", "model.safetensors", "preprocessor_config.json"]  # no .bin, .h5, .msgpack
    assert CLIPVisionModel.from_pretrained(out).config.model_type == "clip_vision_model"


def test_gemma_and_dinov2_keep_their_published_safetensors_only(env, tmp_path):
    gemma = download_model("google/gemma-2b-it", tmp_path / "2b")
    names = {p.name for p in gemma.iterdir() if p.is_file()}
    assert {"model.safetensors.index.json", "tokenizer.model", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json", "model-00001-of-00002.safetensors"} <= names
    assert not any(n.endswith(".gguf") for n in names)
    dino = download_model("facebook/dinov2-giant", tmp_path / "dinov2")
    assert sorted(p.name for p in dino.iterdir() if p.is_file()) == [
        "config.json", "model.safetensors", "preprocessor_config.json"]
    lfs = [r for r in env.requests if r.startswith("GET /lfs/")]
    assert lfs, "LFS files come through the redirect, as from the hub's CDN"


def test_dataset_files_verify_against_the_hub_sha256_and_mmvp_names_with_a_space(env, tmp_path):
    chat = download_hub_file("liuhaotian/LLaVA-CC3M-Pretrain-595K", "chat.json", tmp_path / "chat.json")
    assert isinstance(json.loads(chat.read_text()), list)
    image = download_hub_file("MMVP/MMVP", "MMVP Images/7.jpg", tmp_path / "7.jpg")
    assert image.read_bytes()[:3] == b"\xff\xd8\xff"
    shard = "data/test-00002-of-00004-594798fd3f5b029c.parquet"
    assert download_hub_file("lmms-lab/MME", shard, tmp_path / "mme.parquet").stat().st_size > 0
    assert any("paths-info" in r for r in env.requests)  # the sha256 came from the hub's LFS metadata


def test_a_hub_folder_comes_in_one_snapshot(env, tmp_path):
    out = tmp_path / "mmvp" / "images"
    cli("download", "--out", str(out), "--settings", json.dumps(
        {"hub": "MMVP/MMVP", "repo_type": "dataset", "folder": "MMVP Images"}))
    assert sorted(int(p.stem) for p in out.iterdir()) == list(range(1, 301))
    assert not (tmp_path / "mmvp" / "images.hub").exists()


def test_a_missing_repo_or_file_is_the_clients_own_error(env, tmp_path):
    # One sentence each, as every user-caused error (the hub's own typed errors underneath).
    with pytest.raises(CliError, match=r"error: nobody/nothing is not on the hub at http://127\.0\.0\.1"):
        download_hub_file("nobody/nothing", "x.json", tmp_path / "x.json")
    with pytest.raises(CliError, match=r"error: MMVP/MMVP has no file MMVP Images/301\.jpg"):
        download_hub_file("MMVP/MMVP", "MMVP Images/301.jpg", tmp_path / "301.jpg")


def test_urls_come_from_the_mirror_with_resume_and_the_real_inner_layouts(env, tmp_path):
    from llava_gemma.data.download import download_url

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    url = config["downloads"]["archives/vg_images_part2.zip"]["url"]
    dest = tmp_path / "vg2.zip"
    full = env.store.root / "urls" / "cs.stanford.edu" / "people" / "rak248" / "VG_100K_2" / "images2.zip"
    (tmp_path / "vg2.zip.part").write_bytes(full.read_bytes()[:1000])  # an interrupted earlier attempt
    download_url(url, dest, progress=False)
    assert dest.read_bytes() == full.read_bytes()
    assert any(r.startswith("GET /urls/cs.stanford.edu/") for r in env.requests)
    with zipfile.ZipFile(dest) as zf:
        assert {n.split("/")[0] for n in zf.namelist()} == {"VG_100K_2"}
    expected_tops = {"archives/coco_train2017.zip": {"train2017"}, "archives/gqa_images.zip": {"images"},
                     "archives/textvqa_train_val_images.zip": {"train_images"},
                     "archives/coco_val2014.zip": {"val2014"}, "archives/mm-vet.zip": {"mm-vet"},
                     "archives/scienceqa_test_images.zip": {"test"}}
    for key, tops in expected_tops.items():
        download_url(config["downloads"][key]["url"], tmp_path / key, progress=False)
        with zipfile.ZipFile(tmp_path / key) as zf:
            assert {n.split("/")[0] for n in zf.namelist()} == tops, key


def _paper_sources():
    from llava_gemma.data.sources import hub_sources
    from llava_gemma.study.config import StudyConfig

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    return hub_sources(config, StudyConfig(config).models)


def test_the_preflight_refuses_gated_gemma_without_a_token_and_unpinned_sources(env, tmp_path, monkeypatch):
    out = tmp_path / "sources.json"
    sources = _paper_sources()
    settings = json.dumps({"sources": sources, "allow_unpinned": True})
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(CliError, match=r"error: google/gemma-\db-it is gated and HF_TOKEN is not set"):
        cli("check-sources", "--out", str(out), "--settings", settings)
    assert not out.exists()
    with pytest.raises(CliError, match=r"GatedRepo|gated"):  # and a download without a token fails the same way
        download_model("google/gemma-2b-it", tmp_path / "2b")
    monkeypatch.setenv("HF_TOKEN", env.environment()["HF_TOKEN"])
    with pytest.raises(CliError, match=r"is not pinned \(revision: UNPINNED\) \(and \d+ more\); set its revision "
                                       r"to a commit id, which `python -c .*repo_info"):
        cli("check-sources", "--out", str(out), "--settings", json.dumps({"sources": sources}))
    resolved = cli("check-sources", "--out", str(out), "--settings", settings)
    assert json.loads(out.read_text()) == resolved
    gemma = next(v for v in resolved.values() if v["hub"] == "google/gemma-2b-it")
    assert gemma["gated"] and len(gemma["commit"]) == 40
    # the downloads read the preflight's commit; a pin the hub does not know is one sentence
    cli("download", "--out", str(tmp_path / "Questions.csv"), "--sources", str(out), "--settings", json.dumps(
        {"hub": "MMVP/MMVP", "repo_type": "dataset", "file": "Questions.csv", "revision": "UNPINNED"}))
    assert any(f"/resolve/{next(v for v in resolved.values() if v['hub'] == 'MMVP/MMVP')['commit']}/" in r
               for r in env.requests)
    with pytest.raises(CliError, match=r"MMVP/MMVP has no such revision"):
        cli("download", "--out", str(tmp_path / "Q2.csv"), "--settings", json.dumps(
            {"hub": "MMVP/MMVP", "repo_type": "dataset", "file": "Questions.csv", "revision": "0" * 40}))


def test_an_archive_whose_layout_moved_fails_its_extraction_and_writes_no_marker(mirror, tmp_path):
    # questions1.2.zip as a release that nests its JSON under a folder: config.yaml's own `extract` entry must
    # refuse it in one sentence (no done-marker), not unpack nothing and let GQA fail after all training.
    from llava_gemma.rehearsal.sources import url_path

    root, _, _ = mirror
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    key = "archives/gqa_testdev_questions.zip"
    moved = tmp_path / "gqa_testdev_questions.zip"
    with zipfile.ZipFile(url_path(root, config["downloads"][key]["url"])) as src, zipfile.ZipFile(moved, "w") as dst:
        for name in src.namelist():
            dst.writestr(f"questions1.2/{name}", src.read(name))
    marker = tmp_path / "gqa_testdev_questions.zip.extracted.json"
    with pytest.raises(CliError, match=r"error: .*gqa_testdev_questions\.zip gave no file \(members "
                                       r"testdev_balanced_questions\.json\): its `extract` entry expects "
                                       r"testdev_balanced_questions\.json"):
        cli("extract", "--archive", str(moved), "--into", str(tmp_path / "gqa"), "--out", str(marker),
            "--settings", json.dumps(config["extract"][key]))
    assert not marker.exists() and not (tmp_path / "gqa").exists()


def test_every_download_of_the_paper_config_has_a_stand_in(mirror):
    from llava_gemma.rehearsal.sources import hub_path, url_path

    root, _, built = mirror
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    for key, spec in config["downloads"].items():
        path = url_path(root, spec["url"]) if "url" in spec else hub_path(root, spec)
        assert path.is_file() or ("folder" in spec and len(list(path.iterdir())) == 300), key
    assert set(built["questions"]) == set(config["eval"]["benchmarks"])


def test_run_rehearsal_serves_places_the_manual_files_runs_and_plans_again(tmp_path):
    """The wrapper of the full rehearsal, on a two-rule workflow: settings reach the jobs, counts are parsed."""
    from llava_gemma.rehearsal.run import run_rehearsal

    mirror = tmp_path / "mirror"
    (mirror / "urls" / "example.org").mkdir(parents=True)
    (mirror / "urls" / "example.org" / "a.txt").write_text("hello\n")
    (mirror / "manual" / "ocr_vqa").mkdir(parents=True)
    (mirror / "manual" / "ocr_vqa" / "dataset.json").write_text("{}")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "config.yaml").write_text("url: http://example.org/a.txt\n")
    (repo / "rehearsal.yaml").write_text("copies: 2\n")
    (repo / "Snakefile").write_text(
        "rule all:\n    input: expand('out/{i}.txt', i=range(config['copies']))\n"
        "rule fetch:\n    input: 'data/raw/ocr_vqa/dataset.json'\n    output: 'out/{i}.txt'\n"
        "    shell: \"python -c \\\"import os, urllib.request; base = os.environ['LLAVA_GEMMA_URL_MIRROR']; "
        "open('{output}', 'wb').write(urllib.request.urlopen(base + '/example.org/a.txt').read())\\\"\"\n")
    result = run_rehearsal(repo, mirror, tmp_path / "work", cores=1)
    assert result["returncode"] == 0, open(result["log"]).read()[-2000:]
    assert result["jobs_by_rule"] == result["planned_by_rule"] == {"fetch": 2}
    assert (tmp_path / "work" / "out" / "1.txt").read_text() == "hello\n"
    assert result["second_run"] == {} and result["second_run_returncode"] == 0


def test_a_pinned_config_is_served_under_its_commit_ids(tmp_path):
    # Once config.yaml pins real commits, the rehearsal must serve them unchanged (build writes revisions.json).
    import urllib.error
    import urllib.request

    from llava_gemma.rehearsal.build import pinned_revisions
    from llava_gemma.rehearsal.server import MirrorServer

    pin = "0123456789abcdef0123456789abcdef01234567"
    config = {"grid": [{"factor": "lm", "levels": {"2b": {"language_model": {"hub": "google/gemma-2b-it",
                                                                              "revision": pin}}}}],
              "downloads": {"mme.parquet": {"hub": "lmms-lab/MME", "file": "a.json", "revision": "UNPINNED"}}}
    assert pinned_revisions(config) == {"model/google/gemma-2b-it": pin}
    repo = tmp_path / "hub" / "model" / "google" / "gemma-2b-it"
    repo.mkdir(parents=True)
    (repo / "config.json").write_text("{}")
    (tmp_path / "revisions.json").write_text(json.dumps(pinned_revisions(config)))
    server = MirrorServer(tmp_path).start()
    try:
        api = f"{server.base_url}/api/models/google/gemma-2b-it/revision"
        assert json.loads(urllib.request.urlopen(f"{api}/{pin}").read())["sha"] == pin
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{api}/{'f' * 40}")
        assert err.value.headers["X-Error-Code"] == "RevisionNotFound"
    finally:
        server.stop()
