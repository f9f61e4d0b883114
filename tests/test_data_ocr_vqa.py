"""OCR-VQA covers from their URL list, against a local HTTP server: dead links are counted, not fatal.

dataset.json is in the release's format (book id -> imageURL, title, questions, ...); the server
answers like the old Amazon image links: covers, GIFs under a .jpg name, and 404s.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from llava_gemma.cli import main as cli
from llava_gemma.data.ocr_vqa import (
    CoverFetchStopped,
    FetchBudget,
    audit_ocr_vqa_images,
    download_ocr_vqa_images,
    image_name,
    needed_from_mix,
)
from llava_gemma.data.prepare import prepare_dataset
from llava_gemma.model.assemble import prepare_tokenizer
from llava_gemma.toy.tokenizer import train_toy_tokenizer
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def cover(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (20, 30), (10, 120, 200)).save(buf, fmt)
    return buf.getvalue()


# Paths as on ecx.images-amazon.com; a GIF under .jpg, and one under .gif (LLaVA's mix names it .jpg).
FILES = {"/images/I/51a.jpg": cover("JPEG"), "/images/I/51b.jpg": cover("GIF"), "/images/I/51e.gif": cover("GIF")}


@pytest.fixture
def server():
    requests = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            requests.append(self.path)
            if self.path not in FILES:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(FILES[self.path])))
            self.end_headers()
            self.wfile.write(FILES[self.path])

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


def book(url: str, title: str) -> dict:
    """One entry of OCR-VQA's dataset.json."""
    return {"imageURL": url, "title": title, "authorName": "A. Author", "genre": "History", "split": 1,
            "questions": ["Who wrote this book?", "What is the title of this book?"],
            "answers": ["A. Author", title]}


def write_release(tmp_path: Path, base: str) -> tuple[Path, Path]:
    books = {"0001": book(f"{base}/images/I/51a.jpg", "A"), "0002": book(f"{base}/images/I/51b.jpg", "B"),
             "0003": book(f"{base}/images/I/dead.jpg", "C"), "0004": book(f"{base}/images/I/51d.jpg", "D"),
             "0005": book(f"{base}/images/I/51e.gif", "E")}
    (tmp_path / "dataset.json").write_text(json.dumps(books))
    turns = [{"from": "human", "value": "<image>\nWho wrote this book?"}, {"from": "gpt", "value": "A. Author"}]
    mix = [{"id": i, "image": f"ocr_vqa/images/{i}.jpg", "conversations": turns}
           for i in ("0001", "0002", "0003", "0005", "0009")]
    mix += [{"id": "c", "image": "coco/train2017/1.jpg", "conversations": turns}, {"id": "t", "conversations": []}]
    (tmp_path / "mix.json").write_text(json.dumps(mix))
    return tmp_path / "dataset.json", tmp_path / "mix.json"


def test_covers_are_fetched_dead_links_counted_and_a_rerun_fetches_nothing(server, tmp_path):
    base, requests = server
    dataset, mix = write_release(tmp_path, base)
    needed = needed_from_mix(mix)
    assert needed == {"0001": "0001.jpg", "0002": "0002.jpg", "0003": "0003.jpg", "0005": "0005.jpg",
                      "0009": "0009.jpg"}

    into = tmp_path / "images/ocr_vqa/images"
    report = download_ocr_vqa_images(dataset, into, needed=needed, retries=1, progress=False)
    assert (into / "0001.jpg").read_bytes() == FILES["/images/I/51a.jpg"]
    assert (into / "0002.jpg").read_bytes()[:3] == b"GIF"  # kept as served: prepare converts it
    assert (into / "0005.jpg").read_bytes()[:3] == b"GIF"  # named as the mix names it, not .gif
    assert not (into / "0003.jpg").exists() and not list(into.glob("*.part"))
    assert {k: report[k] for k in ("wanted", "downloaded", "dead", "unlisted", "failed")} == \
        {"wanted": 5, "downloaded": 3, "dead": 1, "unlisted": 1, "failed": 2}
    assert report["formats"] == {"gif": 2, "jpeg": 1}
    assert "404" in report["failures"]["0003"] and report["failures"]["0009"] == "not in dataset.json"
    assert "/images/I/51d.jpg" not in requests  # not used by the mix: not fetched

    requests.clear()
    again = download_ocr_vqa_images(dataset, into, needed=needed, retries=1, progress=False)
    assert requests == ["/images/I/dead.jpg"] and again["present_before"] == 3 and again["formats"] == report["formats"]


def test_the_cli_writes_the_report_and_prepare_counts_dead_covers_as_missing(server, tmp_path):
    base, _ = server
    dataset, mix = write_release(tmp_path, base)
    out = tmp_path / "ocr_vqa_images.json"
    settings = json.dumps({"source": "urls", "threads": 4, "retries": 1, "timeout": 5})
    assert cli(["fetch-ocr-vqa", "--mix", str(mix), "--into", str(tmp_path / "images/ocr_vqa/images"),
                "--out", str(out), "--dataset_json", str(dataset), "--settings", settings]) == 0
    report = json.loads(out.read_text())
    assert report["missing_fraction"] == pytest.approx(2 / 5) and not list(tmp_path.glob("*.part"))

    train_toy_tokenizer(["Who wrote this book? A. Author"] * 20, tmp_path / "tok", vocab_size=300)
    prepared = prepare_dataset(mix, tmp_path / "images", prepare_tokenizer(tmp_path / "tok"), tmp_path / "prepared",
                               fmt="gemma", max_length=256, image_tokens=4, default_source="other",
                               max_drop_fraction=1.0, workers=1)
    ocr = prepared["sources"]["ocr_vqa"]
    assert ocr["dropped"] == {"image_missing": 2} and ocr["repaired"] == {"image_converted": 2}
    assert pq.read_table(tmp_path / "prepared/data.parquet").column("converted").to_pylist().count(True) == 2


def test_a_mirror_is_audited_the_same_way(tmp_path):
    into = tmp_path / "ocr_vqa/images"
    into.mkdir(parents=True)
    (into / "1.jpg").write_bytes(cover("JPEG"))
    (into / "2.jpg").write_bytes(cover("GIF"))
    report = audit_ocr_vqa_images(into, {"1": "1.jpg", "2": "2.jpg", "3": "3.jpg"})
    assert report["failed"] == 1 and report["failures"] == {"3": "not in the mirror"}
    assert report["formats"] == {"jpeg": 1, "gif": 1}


def test_names_follow_the_url_extension_as_the_mix_expects():
    assert image_name("0195153448", "http://ecx.images-amazon.com/images/I/61Y5cOdHJbL.jpg") == "0195153448.jpg"
    assert image_name("1", "http://host/x.gif?size=2") == "1.gif"
    assert image_name("1", "http://host/x") == "1.jpg"


def test_a_wrong_dataset_file_is_one_sentence(tmp_path):
    (tmp_path / "dataset.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"is not OCR-VQA's dataset\.json"):
        download_ocr_vqa_images(tmp_path / "dataset.json", tmp_path / "out", progress=False)


def dry_run_jobs(config: dict, tmp_path: Path, target: str) -> dict[str, int]:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    done = subprocess.run([sys.executable, "-m", "snakemake", target, "-n", "-s", str(ROOT / "Snakefile"),
                           "-d", str(tmp_path), "--configfile", str(tmp_path / "config.yaml")],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    table = done.stdout.split("Job stats:")[1].split("total")[0]
    return {line.split()[0]: int(line.split()[1]) for line in table.splitlines()[3:] if line.strip()}


@pytest.mark.parametrize("source", ["urls", "hub"])
def test_the_instruct_data_waits_for_the_covers_of_the_chosen_source(source, tmp_path):
    # Two dry runs of the paper config (~5 s each): the DAG is the thing under test.
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    assert config["ocr_vqa"]["source"] == "hub"  # the default: the covers' hub mirror
    if source == "urls":
        config["ocr_vqa"]["source"] = "urls"
    jobs = dry_run_jobs(config, tmp_path, "data/prepared/instruct/data.parquet")
    assert jobs["fetch_ocr_vqa_images"] == 1 and jobs["prepare_dataset"] == 1
    if source == "urls":  # dataset.json lives on Google Drive: placed by hand, the job says so
        assert jobs["await_manual_download"] == 1
    else:
        assert "await_manual_download" not in jobs and jobs["extract_archive"] == 6  # 5 image archives + mirror


def test_a_mostly_dead_link_list_stops_after_the_probe_in_one_sentence(server, tmp_path):
    base, requests = server
    requests.clear()
    books = {f"{i:04d}": book(f"{base}/images/I/{'51a' if i % 4 == 0 else 'dead'}.jpg", str(i)) for i in range(40)}
    (tmp_path / "dataset.json").write_text(json.dumps(books))
    needed = {book_id: f"{book_id}.jpg" for book_id in books}
    budget = FetchBudget(probe=8, max_failure_rate=0.5)
    with pytest.raises(CoverFetchStopped, match=r"of the first 8 URLs failed \(\d+%, more than "
                                                r"ocr_vqa.max_failure_rate 50%\).*set ocr_vqa.source: hub"):
        download_ocr_vqa_images(tmp_path / "dataset.json", tmp_path / "covers", needed=needed, threads=2,
                                retries=1, progress=False, budget=budget)
    assert len(requests) < 40  # the rest was never tried
    # A pace that cannot meet the budget stops too (here any pace: the budget is a millisecond).
    with pytest.raises(CoverFetchStopped, match=r"past ocr_vqa.budget_seconds"):
        download_ocr_vqa_images(tmp_path / "dataset.json", tmp_path / "covers", needed=needed, threads=2,
                                retries=1, progress=False, budget=FetchBudget(seconds=0.001, probe=4))
