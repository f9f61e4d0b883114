"""VQAv2's val2017 split: only the val2014 questions on images the 665k mix never trains on (not in train2017)."""

from __future__ import annotations

import json

import pytest
from llava_gemma.errors import UserError
from llava_gemma.eval.benchmarks import get_benchmark
from PIL import Image


def write_vqav2(raw, image_ids):
    root = raw / "benchmarks" / "vqav2"
    (root / "val2014").mkdir(parents=True)
    questions, annotations = [], []
    for image_id in image_ids:
        Image.new("RGB", (32, 32)).save(root / "val2014" / f"COCO_val2014_{image_id:012d}.jpg")
        for j in range(2):
            qid = image_id * 10 + j
            questions.append({"image_id": image_id, "question": "what?", "question_id": qid})
            annotations.append({"question_id": qid, "image_id": image_id, "answer_type": "other",
                                "answers": [{"answer": "red"}] * 10})
    (root / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps({"questions": questions}))
    (root / "v2_mscoco_val2014_annotations.json").write_text(json.dumps({"annotations": annotations}))
    return root


def test_val2017_leaves_out_every_image_in_train2017(tmp_path):
    root = write_vqav2(tmp_path, [139, 285, 391895, 522418])
    train2017 = tmp_path / "llava_instruct" / "images" / "coco" / "train2017"
    train2017.mkdir(parents=True)
    for image_id in (391895, 522418, 9):  # val2014 images that COCO 2017 moved into train
        (train2017 / f"{image_id:012d}.jpg").write_bytes(b"")
    everything = get_benchmark("vqav2").with_options().load(root)
    clean = get_benchmark("vqav2").with_options(split="val2017").load(root)
    assert len(everything) == 8
    assert sorted(q.qid for q in clean) == ["1390", "1391", "2850", "2851"]
    bench = get_benchmark("vqav2").with_options(split="val2017")
    records = [{"score": 1.0, "answer_type": "other"} for _ in clean]
    assert bench.aggregate(records)["split"] == "val2017"


def test_val2017_without_train2017_or_an_unknown_split_is_one_sentence(tmp_path):
    root = write_vqav2(tmp_path, [139])
    with pytest.raises(Exception, match=r"train2017"):
        get_benchmark("vqav2").with_options(split="val2017").load(root)
    with pytest.raises(UserError, match=r"eval.benchmarks.vqav2.split is 'test'; use one of val2014, val2017"):
        get_benchmark("vqav2").with_options(split="test")
