"""Preparation end to end on a small mix in the upstream format with every bad case in it."""

from __future__ import annotations

import io
import json
import random

import pyarrow.parquet as pq
import pytest
from llava_gemma.data.jsonstream import BrokenFile
from llava_gemma.data.prepare import TooManyDropped, prepare_dataset
from llava_gemma.model.assemble import prepare_tokenizer
from llava_gemma.toy.tokenizer import train_toy_tokenizer
from llava_gemma.train.masking import IGNORE_INDEX
from PIL import Image

WORDS = "the a red blue green circle square small large left right of is in what colour where yes no".split()
SHORT = "\nAnswer the question using a single word or phrase."


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    rng = random.Random(0)
    lines = [" ".join(rng.choices(WORDS, k=12)) + "?" for _ in range(300)] + [SHORT.strip()]
    path = tmp_path_factory.mktemp("tok")
    train_toy_tokenizer(lines, path, vocab_size=400)
    return prepare_tokenizer(path)


def jpeg(colour=(200, 40, 40), fmt="JPEG") -> bytes:
    buf = io.BytesIO()
    img = Image.new("RGB", (40, 30), colour)
    (img.convert("P") if fmt == "GIF" else img).save(buf, fmt)
    return buf.getvalue()


def turns(*pairs, image=True):
    out = []
    for i, (q, a) in enumerate(pairs):
        out += [{"from": "human", "value": ("<image>\n" + q) if image and i == 0 else q}, {"from": "gpt", "value": a}]
    return out


@pytest.fixture
def mix(tmp_path):
    """20 good records per image source and 20 text-only ones, then one of every bad case."""
    root = tmp_path / "images"
    folders = {"coco": "coco/train2017", "gqa": "gqa/images", "ocr_vqa": "ocr_vqa/images",
               "textvqa": "textvqa/train_images", "vg": "vg/VG_100K"}
    for folder in folders.values():
        (root / folder).mkdir(parents=True)
        for i in range(4):  # 20 records share 4 images: each is checked once
            (root / folder / f"{i}.jpg").write_bytes(jpeg((60 * i, 90, 150)))
    rng = random.Random(1)
    records = []
    for source, folder in folders.items():
        for i in range(20):
            q = " ".join(rng.choices(WORDS, k=6)) + "?" + SHORT
            records.append({"id": f"{source}{i}", "image": f"{folder}/{i % 4}.jpg",
                            "conversations": turns((q, rng.choice(["yes", "no", "red circle"])), (q, "blue"))})
    for i in range(20):
        records.append({"id": f"text{i}", "conversations": turns((f"what is {i}?", "a square " * (i + 1)),
                                                                  image=False)})
    (root / "ocr_vqa/images/gif.jpg").write_bytes(jpeg(fmt="GIF"))
    (root / "ocr_vqa/images/png.jpg").write_bytes(jpeg(fmt="PNG"))
    noisy = io.BytesIO()
    Image.frombytes("RGB", (64, 64), random.Random(2).randbytes(64 * 64 * 3)).save(noisy, "JPEG")
    (root / "textvqa/train_images/cut.jpg").write_bytes(noisy.getvalue()[: len(noisy.getvalue()) // 2])
    (root / "vg/VG_100K/empty.jpg").write_bytes(b"")
    (root / "vg/VG_100K/html.jpg").write_bytes(b"<html>")
    good = turns(("what colour is it?", "red"))
    bad = [
        {"id": "gif", "image": "ocr_vqa/images/gif.jpg", "conversations": good},  # converted, kept
        {"id": "png", "image": "ocr_vqa/images/png.jpg", "conversations": turns(("where is it?", "left"))},
        {"id": "late", "image": "coco/train2017/0.jpg",  # <image> after the question: moved, kept
         "conversations": [{"from": "human", "value": "what is small?\n<image>"}, {"from": "gpt", "value": "no"}]},
        {"id": "cut", "image": "textvqa/train_images/cut.jpg", "conversations": good},
        {"id": "empty", "image": "vg/VG_100K/empty.jpg", "conversations": good},
        {"id": "html", "image": "vg/VG_100K/html.jpg", "conversations": good},
        {"id": "gone", "image": "gqa/images/404.jpg", "conversations": good},
        records[0] | {"id": "dup"},
        {"id": "noconv", "image": "coco/train2017/1.jpg"},
        {"id": "order", "image": "coco/train2017/1.jpg",
         "conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "human", "value": "a"}]},
        {"id": "blank", "image": "gqa/images/1.jpg", "conversations": turns(("what?", " "))},
        {"id": "notoken", "image": "gqa/images/1.jpg", "conversations": turns(("what?", "red"), image=False)},
        {"id": "two", "image": "gqa/images/1.jpg", "conversations": turns(("what <image>?", "red"))},
        {"id": "stray", "conversations": turns(("<image>\nwhat?", "red"), image=False)},
        {"id": "long", "image": "coco/train2017/2.jpg", "conversations": turns(("what?", "red circle " * 200))},
        "not a record",
    ]
    path = tmp_path / "llava_v1_5_mix665k.json"
    path.write_text(json.dumps(records + bad, indent=1))
    return path, root


def run(mix, tokenizer, out, **kw):
    path, root = mix
    args = dict(fmt="gemma", max_length=256, image_tokens=16, default_source="other", max_drop_fraction=1.0,
                workers=1)
    return prepare_dataset(path, root, tokenizer, out, **(args | kw))


def test_every_bad_case_is_counted_by_reason(mix, tokenizer, tmp_path):
    report = run(mix, tokenizer, tmp_path / "out")
    s = report["sources"]
    assert report["total"] == 120 + 16 and report["kept"] == 120 + 3
    assert s["ocr_vqa"]["repaired"] == {"image_converted": 2} and s["ocr_vqa"]["kept"] == 22
    assert s["coco"]["repaired"] == {"image_token_moved_to_front": 1}
    assert s["coco"]["dropped"] == {"duplicate": 1, "no_conversations": 1, "roles_out_of_order": 1, "too_long": 1}
    assert s["gqa"]["dropped"] == {"image_missing": 1, "empty_turn": 1, "image_token_missing": 1,
                                   "several_image_tokens": 1}
    assert s["textvqa"]["dropped"] == {"image_truncated": 1}
    assert s["vg"]["dropped"] == {"image_empty": 1, "image_unreadable": 1}
    assert s["text"]["dropped"] == {"image_token_in_text_only_record": 1}
    assert s["unknown"] == {"total": 1, "kept": 0, "kept_fraction": 0.0, "dropped": {"not_a_record": 1},
                            "repaired": {}}
    # Every distinct file was checked once: 4 per folder, plus the 6 odd ones named above.
    assert report["images"]["distinct"] == 20 + 6 and report["images"]["converted"] == 2
    assert json.loads((tmp_path / "out/filter_report.json").read_text()) == report


def test_the_report_names_the_dropped_records_per_reason(mix, tokenizer, tmp_path):
    examples = run(mix, tokenizer, tmp_path / "out")["dropped_examples"]
    assert examples["image_truncated"] == [{"id": "cut", "image": "textvqa/train_images/cut.jpg", "source": "textvqa"}]
    assert examples["image_missing"] == [{"id": "gone", "image": "gqa/images/404.jpg", "source": "gqa"}]
    assert examples["duplicate"] == [{"id": "dup", "image": "coco/train2017/0.jpg", "source": "coco"}]
    assert examples["too_long"][0]["id"] == "long" and examples["no_conversations"][0]["id"] == "noconv"
    # A record that is not an object has no id: its place in the file names it.
    assert examples["not_a_record"] == [{"id": f"#{120 + 15}", "image": None, "source": "unknown"}]
    assert set(examples) == {r for stats in run(mix, tokenizer, tmp_path / "again")["sources"].values()
                             for r in stats["dropped"]}


def test_at_most_twenty_examples_per_reason(tokenizer, tmp_path):
    from llava_gemma.data.prepare import EXAMPLES

    records = [{"id": f"r{i}", "conversations": [{"from": "human", "value": "q"}]} for i in range(EXAMPLES + 5)]
    (tmp_path / "mix.json").write_text(json.dumps(records))
    report = prepare_dataset(tmp_path / "mix.json", tmp_path, tokenizer, tmp_path / "out", fmt="gemma",
                             max_length=256, image_tokens=16, default_source="other", max_drop_fraction=1.0,
                             workers=1)
    named = report["dropped_examples"]["unanswered_last_turn"]
    assert [e["id"] for e in named] == [f"r{i}" for i in range(EXAMPLES)]
    assert report["sources"]["text"]["dropped"] == {"unanswered_last_turn": EXAMPLES + 5}


def test_rows_are_tokenized_masked_and_point_at_loadable_images(mix, tokenizer, tmp_path):
    run(mix, tokenizer, tmp_path / "out")
    table = pq.read_table(tmp_path / "out/data.parquet")
    assert table.column_names == ["id", "source", "image", "input_ids", "labels", "length", "modality", "converted"]
    rows = {r["id"]: r for r in table.to_pylist()}
    assert "dup" not in rows and "coco0" in rows and "long" not in rows
    late = rows["late"]
    supervised = [t for t, lab in zip(late["input_ids"], late["labels"]) if lab != IGNORE_INDEX]
    assert tokenizer.decode(supervised) == "no<end_of_turn>"
    assert tokenizer.decode(late["input_ids"]).startswith("<bos><start_of_turn>user\n<image>\nwhat is small?")
    assert late["length"] == len(late["input_ids"]) + 15  # <image> stands for 16 tokens
    assert rows["text3"]["modality"] == "text" and rows["text3"]["image"] is None
    assert rows["gif"]["converted"] and not rows["coco1"]["converted"]
    with Image.open(tmp_path / "out/converted" / rows["gif"]["image"]) as img:
        assert img.format == "JPEG"


def test_two_worker_processes_give_the_same_output(mix, tokenizer, tmp_path):
    one = run(mix, tokenizer, tmp_path / "one", workers=1)
    two = run(mix, tokenizer, tmp_path / "two", workers=2, batch_size=7)
    assert one == two
    assert pq.read_table(tmp_path / "one/data.parquet").equals(pq.read_table(tmp_path / "two/data.parquet"))


def test_a_source_losing_too_much_fails_naming_it_and_the_reasons(mix, tokenizer, tmp_path):
    _, root = mix
    for f in (root / "vg/VG_100K").glob("[0-9].jpg"):
        f.unlink()  # as if the VG archive had not been extracted
    with pytest.raises(TooManyDropped, match=r"source 'vg' of llava_v1_5_mix665k.json lost 100.0% of its records "
                                             r"\(more than data.max_drop_fraction = 20%\); top reasons: "
                                             r"image_missing \(20\), .*raise data.max_drop_fraction"):
        run(mix, tokenizer, tmp_path / "out", max_drop_fraction=0.2)
    rejected = json.loads((tmp_path / "out/filter_report.rejected.json").read_text())
    assert rejected["sources"]["vg"]["kept"] == 0


def test_a_few_unreadable_elements_do_not_fail_the_stage(mix, tokenizer, tmp_path):
    # One element in 136 has no source at all; judged against the file, not as a 100% loss.
    report = run(mix, tokenizer, tmp_path / "out", max_drop_fraction=0.2)
    assert report["sources"]["unknown"]["kept_fraction"] == 0.0


def test_a_missing_records_file_is_one_sentence(tokenizer, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"chat\.json is missing; run its download rule first"):
        prepare_dataset(tmp_path / "chat.json", tmp_path, tokenizer, tmp_path / "out", fmt="plain", max_length=64,
                        image_tokens=4, default_source="cc3m", max_drop_fraction=0.05)


def test_stage1_captions(tokenizer, tmp_path):
    (tmp_path / "images").mkdir()
    records = []
    for i in range(6):
        (tmp_path / "images" / f"GCC_train_{i:09d}.jpg").write_bytes(jpeg())
        prompt = "Describe the image.\n<image>" if i % 2 else "<image>\nDescribe the image."
        conv = [{"from": "human", "value": prompt}, {"from": "gpt", "value": "a red circle"}]
        records.append({"id": str(i), "image": f"GCC_train_{i:09d}.jpg", "conversations": conv})
    more = [{"from": "human", "value": "And?"}, {"from": "gpt", "value": "no"}]
    records.append(records[0] | {"id": "x", "conversations": records[0]["conversations"] + more})
    (tmp_path / "chat.json").write_text(json.dumps(records))
    report = prepare_dataset(tmp_path / "chat.json", tmp_path / "images", tokenizer, tmp_path / "out", fmt="plain",
                             max_length=64, image_tokens=4, default_source="cc3m", max_drop_fraction=0.5)
    assert report["sources"]["cc3m"]["dropped"] == {"not_a_caption_pair": 1}
    assert report["sources"]["cc3m"]["repaired"] == {}  # stage 1 drops the prompt: nothing to move
    row = pq.read_table(tmp_path / "out/data.parquet").to_pylist()[0]
    assert tokenizer.decode([t for t, lab in zip(row["input_ids"], row["labels"]) if lab != IGNORE_INDEX]) == \
        "a red circle<eos>"


def test_a_rerun_opens_only_new_or_changed_images(mix, tokenizer, tmp_path, monkeypatch):
    from llava_gemma.data import images

    first = run(mix, tokenizer, tmp_path / "out")
    opened = []
    real = images.check_image
    monkeypatch.setattr(images, "check_image", lambda path, *a, **k: opened.append(path.name) or real(path, *a, **k))
    _, root = mix
    (root / "coco/train2017/3.jpg").write_bytes(jpeg((1, 2, 3)) + b"\0")  # changed since the first run
    again = run(mix, tokenizer, tmp_path / "out")
    assert sorted(opened) == ["3.jpg", "404.jpg"]  # the changed file, and the missing one (never remembered)
    assert again["images"]["remembered_from_earlier_run"] == first["images"]["distinct"] - 2
    assert {k: v for k, v in again.items() if k != "images"} == {k: v for k, v in first.items() if k != "images"}
    rows = pq.read_table(tmp_path / "out/data.parquet").to_pylist()
    assert any(r["converted"] for r in rows) and (tmp_path / "out/converted/ocr_vqa/images/gif.jpg").exists()

    opened.clear()  # a stricter check than the remembered one opens every file again
    run(mix, tokenizer, tmp_path / "header", image_check="header")
    run(mix, tokenizer, tmp_path / "header", image_check="decode")
    assert len(opened) == 2 * 26


def test_a_record_outside_the_image_root_is_dropped_and_counted_not_failing(mix, tokenizer, tmp_path):
    path, _ = mix
    records = json.loads(path.read_text())
    good = turns(("what colour is it?", "red"))
    records += [{"id": "abs", "image": "/etc/passwd", "conversations": good},
                {"id": "up", "image": "coco/../../secret.jpg", "conversations": good},
                {"id": "conv", "image": "coco/train2017/0.jpg", "conversations": "<image>\nwhat?"},
                {"id": "list", "image": [], "conversations": good}]
    path.write_text(json.dumps(records))
    report = run(mix, tokenizer, tmp_path / "out", max_drop_fraction=0.2)  # one record in 140 each: no failure
    assert report["sources"]["unknown"]["dropped"] == {"image_path_outside_root": 2, "malformed_image_field": 1,
                                                       "not_a_record": 1}
    assert report["sources"]["coco"]["dropped"]["malformed_conversations"] == 1
    named = json.loads((tmp_path / "out/filter_report.json").read_text())["dropped_examples"]
    assert [e["id"] for e in named["image_path_outside_root"]] == ["abs", "up"]
    assert "" not in report["sources"] and ".." not in report["sources"]


def _lose_vg(root):
    for f in (root / "vg/VG_100K").glob("[0-9].jpg"):
        f.unlink()


def test_the_advice_for_a_lost_source_fits_where_its_images_came_from(mix, tokenizer, tmp_path):
    _, root = mix
    _lose_vg(root)
    marker = tmp_path / "archives/vg_part1.zip.extracted.json"
    marker.parent.mkdir()
    marker.write_text(json.dumps({"archive": str(tmp_path / "archives/vg_part1.zip"), "into": str(root / "vg")}))
    with pytest.raises(TooManyDropped, match=r"source 'vg' .*vg_part1\.zip downloaded completely, then delete "
                                             r".*vg_part1\.zip\.extracted\.json .*rule extract_archive"):
        run(mix, tokenizer, tmp_path / "out", max_drop_fraction=0.2)
    (tmp_path / "toy_world.json").write_text("{}")  # the toy world made these files
    with pytest.raises(TooManyDropped, match=r"source 'vg' .*regenerate the toy world \(delete .*toy_world\.json "
                                             r".*generate_toy_world\) or check the toy_world settings"):
        run(mix, tokenizer, tmp_path / "out", max_drop_fraction=0.2)


def test_a_truncated_records_file_names_its_place_and_keeps_the_earlier_data(mix, tokenizer, tmp_path):
    path, _ = mix
    out = tmp_path / "out"
    run(mix, tokenizer, out)
    before = {name: (out / name).read_bytes() for name in ("data.parquet", "filter_report.json")}
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(BrokenFile, match=r"llava_v1_5_mix665k\.json is not valid JSON at record \d+ \(character "
                                         r"\d+: .*\); delete .*llava_v1_5_mix665k\.json and run snakemake again "
                                         r"\(rule download_file"):
        run(mix, tokenizer, out)
    assert {name: (out / name).read_bytes() for name in before} == before
    assert not (out / "data.parquet.part").exists()
    (tmp_path / "toy_world.json").write_text("{}")
    with pytest.raises(BrokenFile, match=r"not valid JSON at record .*; regenerate the toy world"):
        run(mix, tokenizer, out)


def test_a_rejected_preparation_keeps_the_earlier_data(mix, tokenizer, tmp_path):
    _, root = mix
    out = tmp_path / "out"
    run(mix, tokenizer, out)
    before = (out / "data.parquet").read_bytes()
    _lose_vg(root)
    with pytest.raises(TooManyDropped):
        run(mix, tokenizer, out, max_drop_fraction=0.2)
    assert (out / "data.parquet").read_bytes() == before
    assert json.loads((out / "filter_report.json").read_text())["sources"]["vg"]["kept"] == 20


def test_a_placeholder_cover_is_dropped_as_too_small_and_named_in_the_report(tokenizer, tmp_path):
    # A dead image host answers with a 1 x 1 GIF: it decodes, so only its size tells it from a cover.
    root = tmp_path / "images" / "ocr_vqa" / "images"
    root.mkdir(parents=True)
    (root / "good.jpg").write_bytes(jpeg())
    buf = io.BytesIO()
    Image.new("P", (1, 1)).save(buf, "GIF")
    (root / "dead.jpg").write_bytes(buf.getvalue())
    records = [{"id": name, "image": f"ocr_vqa/images/{name}.jpg", "conversations": turns(("who wrote it?", "a"))}
               for name in ("good", "dead")]
    (tmp_path / "mix.json").write_text(json.dumps(records))
    report = prepare_dataset(tmp_path / "mix.json", tmp_path / "images", tokenizer, tmp_path / "out", fmt="gemma",
                             max_length=256, image_tokens=16, default_source="other", max_drop_fraction=1.0,
                             workers=1)
    assert report["sources"]["ocr_vqa"]["dropped"] == {"image_too_small": 1}
    assert report["dropped_examples"]["image_too_small"][0]["id"] == "dead"
    saved = json.loads((tmp_path / "out" / "filter_report.json").read_text())
    assert saved["sources"]["ocr_vqa"]["dropped"] == {"image_too_small": 1}
