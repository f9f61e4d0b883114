"""Several ranks run the same modules in every optimizer step (stage 2 with text-only samples),
and a sharded evaluation merges to exactly what one rank writes.

Stage 2 here: 18 image and 18 text-only samples, global batch 8 (micro-batch 2), so 4 steps of one
modality and a last step whose one image micro-batch goes to rank 0 while rank 1 gets a text-only
one: without the zero image (train/zero_image.py) rank 1 would skip the tower and the connector,
which under ZeRO-3 waits forever for a gather. Each run has a timeout; the weights after training
equal those of one rank accumulating the same global batch.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from llava_gemma.train.sampler import length_grouped_order
from transformers import LlavaForConditionalGeneration

from tests import train_helpers as th

IMAGES, TEXTS, MICRO, GLOBAL, SEED = 18, 18, 2, 8, 3
STAGE = dict(th.STAGE, learning_rate=1.0e-3, global_batch_size=GLOBAL, per_device_batch_size=MICRO,
             group_by_modality_length=True)
TIMEOUT = 240  # seconds per run; a rank waiting on a collective the other never joins would hang instead


def _turns(question: str, answer: str, image: bool) -> list[dict]:
    return [{"from": "human", "value": ("<image>\n" if image else "") + question}, {"from": "gpt", "value": answer}]


def write_mix(backbones: dict[str, Path], root: Path) -> tuple[Path, Path]:
    """A stage-2 mix in llava_v1_5_mix665k's format, half of it text-only, and its image folder."""
    images = root / "images"
    with zipfile.ZipFile(backbones["captions"] / "images.zip") as zf:
        zf.extractall(images)
    names = sorted(p.name for p in images.iterdir())
    records = []
    for i in range(IMAGES + TEXTS):
        if i % 2 == 0:  # alternating in the file; the sampler decides the order
            records.append({"id": f"img{i}", "image": names[i // 2 % len(names)],
                            "conversations": _turns("Is there a circle in the image?" + "?" * (i % 5), "Yes", True)})
        else:
            question = f"What is {i} plus one?" + " a red circle." * (i % 4)  # distinct: duplicates are dropped
            records.append({"id": f"text{i}", "conversations": _turns(question, f"{i + 1}, a blue circle.", False)})
    (root / "mix.json").write_text(json.dumps(records))
    return root / "mix.json", images


@pytest.fixture(scope="module")
def mix_data(tiny_backbones, tmp_path_factory):
    from llava_gemma.data.prepare import prepare_dataset
    from llava_gemma.model.assemble import assemble_llava, prepare_tokenizer, save_connector

    root = tmp_path_factory.mktemp("mix")
    mix, images = write_mix(tiny_backbones, root)
    prepared = root / "prepared"
    prepare_dataset(mix, images, prepare_tokenizer(tiny_backbones["lm"]), prepared, fmt="gemma", max_length=96,
                    image_tokens=16, default_source="mix", max_drop_fraction=0.0, workers=1)
    # Every run starts from this connector, so no run depends on how its ranks drew random numbers.
    model, _ = assemble_llava(tiny_backbones["lm"], tiny_backbones["clip"])
    save_connector(model, root / "connector.safetensors")
    return prepared, images, root / "connector.safetensors"


def stage2_argv(backbones, data, out: Path, zero_stage: int, **stage) -> list[str]:
    prepared, images, connector = data
    settings = dict(stage=dict(STAGE, zero_stage=zero_stage, **stage), backend="cpu", precision="fp32", seed=SEED,
                    save_steps=0)
    return ["train", "--stage", "stage2", "--lm", str(backbones["lm"]), "--tower", str(backbones["clip"]),
            "--data", str(prepared), "--image_root", str(images), "--out", str(out / "out"),
            "--work", str(out / "work"), "--connector", str(connector), "--settings", json.dumps(settings)]


def has_image_column(prepared: Path) -> tuple[np.ndarray, np.ndarray]:
    from llava_gemma.train.dataset import PreparedDataset

    dataset = PreparedDataset(prepared / "data.parquet", prepared)
    return dataset.lengths, dataset.has_image()


def mixed_steps(order: np.ndarray, has_image: np.ndarray) -> list[int]:
    steps = [order[i:i + GLOBAL] for i in range(0, len(order), GLOBAL)]
    return [k for k, s in enumerate(steps) if 0 < has_image[s].sum() < len(s)]


def test_the_old_order_split_steps_and_the_new_one_does_not(mix_data):
    lengths, has_image = has_image_column(mix_data[0])
    assert has_image.sum() == IMAGES and (~has_image).sum() == TEXTS
    old = length_grouped_order(lengths, has_image, MICRO, SEED)  # batches of one modality, steps not
    assert mixed_steps(old, has_image)[:1] != [len(old) // GLOBAL]  # a step before the last mixes them
    new = length_grouped_order(lengths, has_image, MICRO, SEED, step_batches=GLOBAL // MICRO)
    assert mixed_steps(new, has_image) == [len(new) // GLOBAL]  # only the final remainder
    last = new[-(len(new) % GLOBAL):]
    assert has_image[last[:MICRO]].all() and not has_image[last[MICRO:]].any()  # rank 0 image, rank 1 text


@pytest.fixture(scope="module")
def one_rank(tiny_backbones, mix_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("one_rank")
    th.run(th.llava_gemma("launch", "--tasks", "1", "--backend", "cpu", "--",
                          *stage2_argv(tiny_backbones, mix_data, out, zero_stage=2)), timeout=TIMEOUT)
    return out


# Packed (train/packing.py): rows of 128 tokens, one per micro-batch; a step's 8 samples fill about 3 rows,
# so the ranks run 1 or 2 micro-batches per step (some rows empty), text-only steps and mixed ones included.
PACKED = dict(packing=True, pack_length=128, pack_rows=1)


@pytest.mark.slow
@pytest.mark.parametrize(("zero_stage", "packed"), [(2, False), (3, False), (2, True), (3, True)])
def test_two_ranks_with_text_only_steps_equal_one_rank(zero_stage, packed, tiny_backbones, mix_data, one_rank,
                                                       tmp_path):
    """Two ranks end where one unpacked rank ends, packed or not: same steps, same loss normalisation."""
    argv = stage2_argv(tiny_backbones, mix_data, tmp_path, zero_stage, **(PACKED if packed else {}))
    done = th.run(th.llava_gemma("launch", "--tasks", "2", "--backend", "cpu", "--cpus_per_task", "1", "--", *argv),
                  timeout=TIMEOUT)
    ranks = th.rank_results(done.stdout)
    assert [r["world_size"] for r in ranks] == [2, 2], done.stdout[-2000:]
    one = json.loads((one_rank / "out" / "train_metrics.json").read_text())
    two = json.loads((tmp_path / "out" / "train_metrics.json").read_text())
    assert one["steps"] == two["steps"] == 5
    assert two["parameters"] == one["parameters"]  # counted whole under ZeRO-3's partitioning too
    assert two.get("packing") == ({"row_length": 128, "rows": 1} if packed else None)
    # fp32 on CPU: only the order of the gradient reduction differs. Logged losses carry 4 decimals.
    assert th.losses(tmp_path) == pytest.approx(th.losses(one_rank), abs=2e-4)
    # Loaded as a user would: ZeRO-3's gathered save leaves out the head tied to the embeddings.
    one_weights = LlavaForConditionalGeneration.from_pretrained(one_rank / "out").state_dict()
    two_weights = LlavaForConditionalGeneration.from_pretrained(tmp_path / "out").state_dict()
    assert sorted(two_weights) == sorted(one_weights)
    for name, tensor in one_weights.items():
        torch.testing.assert_close(two_weights[name], tensor, rtol=1e-4, atol=1e-6, msg=name)


# --- evaluation sharded over ranks ---------------------------------------------------------------


@pytest.mark.slow
def test_two_evaluation_ranks_merge_to_what_one_rank_writes(tiny_backbones, tmp_path):
    from llava_gemma.model.assemble import assemble_llava

    from .test_eval_resume import outputs, write_pope

    model, processor = assemble_llava(tiny_backbones["lm"], tiny_backbones["dinov2"])
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    write_pope(tmp_path / "pope", n=5)  # 15 questions in 8 batches of 2: rank 0 gets one batch more
    settings = json.dumps({"batch_size": 2, "max_new_tokens": 3})
    for tasks in ("1", "2"):
        done = th.run(th.llava_gemma("launch", "--tasks", tasks, "--backend", "cpu", "--cpus_per_task", "1", "--",
                                     "evaluate", "--model", str(tmp_path / "model"), "--benchmark", "pope",
                                     "--data", str(tmp_path / "pope"), "--out", str(tmp_path / tasks),
                                     "--work", str(tmp_path / f"work{tasks}"), "--settings", settings),
                      timeout=TIMEOUT)
        assert f"15 answered by {tasks} rank(s)" in done.stderr
    assert outputs(tmp_path / "2") == outputs(tmp_path / "1")
    assert not (tmp_path / "work2").exists()
