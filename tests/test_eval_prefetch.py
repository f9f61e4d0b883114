"""The next batch's images are decoded on a worker thread; the answers (and failures) are the same as inline."""

from __future__ import annotations

import threading

import pytest
from llava_gemma.eval import answers as answers_module
from llava_gemma.eval.answers import answer_shard, plan_batches
from llava_gemma.eval.benchmarks import get_benchmark
from llava_gemma.eval.generate import chat_prompt
from llava_gemma.model.assemble import assemble_llava

from .test_eval_resume import write_pope


@pytest.fixture(scope="module")
def cell(tiny_backbones):
    model, processor = assemble_llava(tiny_backbones["lm"], tiny_backbones["clip"])
    return model.eval(), processor


def test_prefetching_gives_the_same_answers_and_decodes_off_the_generating_thread(cell, tmp_path, monkeypatch):
    model, processor = cell
    write_pope(tmp_path / "pope", n=5, corrupt=3)
    questions = get_benchmark("pope").load(tmp_path / "pope")
    prompts = [chat_prompt(processor, q) for q in questions]
    plan = plan_batches(processor, questions, prompts, 2)
    threads: list[str] = []
    real = answers_module.decodable_rows

    def recording(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(answers_module, "decodable_rows", recording)
    outputs = {}
    for prefetch in (False, True):
        out = tmp_path / f"prefetch_{prefetch}.jsonl"
        answer_shard(model, processor, questions, prompts, plan, list(range(len(plan))), max_new_tokens=3,
                     blind=False, out_file=out, prefetch=prefetch)
        outputs[prefetch] = out.read_text()
    assert outputs[True] == outputs[False] and '"error": "undecodable image' in outputs[True]
    inline, prefetched = threads[:len(plan)], threads[len(plan):]
    assert set(inline) == {threading.main_thread().name}
    assert all(name.startswith("decode") for name in prefetched)
