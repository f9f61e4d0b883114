"""MM-Vet judge: a real OpenAI-compatible HTTP server on 127.0.0.1 (429/500, timeouts, garbage
replies, malformed bodies), the official re-ask rule, the on-disk cache, and the offline scorer."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from llava_gemma.errors import UserError
from llava_gemma.eval.benchmarks import get_benchmark
from llava_gemma.eval.benchmarks.mmvet import MMVetBenchmark
from llava_gemma.eval.judge import (
    GRADER_PROMPT,
    OFFLINE_NAME,
    REASK_SUFFIX,
    JudgeConfig,
    JudgeError,
    LLMJudge,
    OfflineJudge,
    and_or_score,
    build_prompt,
    make_judge,
    parse_score,
)
from llava_gemma.toy.benchmarks_extra import ExtraBenchmarkSpec, generate_extra_benchmarks


class FakeEndpoint:
    """A scripted chat-completions server: each request takes the next action of the script.

    Actions: ("reply", text), ("status", code[, retry_after]), ("sleep", seconds, text), ("raw", body bytes).
    With the script empty it replies "1.0".
    """

    def __init__(self) -> None:
        self.script: list[tuple[Any, ...]] = []
        self.requests: list[dict[str, Any]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                action = endpoint.script.pop(0) if endpoint.script else ("reply", "1.0")
                try:
                    if action[0] == "status":
                        self.send_response(action[1])
                        if len(action) > 2:
                            self.send_header("Retry-After", str(action[2]))
                        self.end_headers()
                        return
                    if action[0] == "sleep":
                        time.sleep(action[1])
                        action = ("reply", action[2])
                    data = action[1] if action[0] == "raw" else json.dumps(
                        {"model": body["model"], "choices": [{"message": {"role": "assistant", "content": action[1]}}]}
                    ).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def prompts(self) -> list[str]:
        return [r["body"]["messages"][0]["content"] for r in self.requests]


@pytest.fixture
def endpoint() -> Iterator[FakeEndpoint]:
    ep = FakeEndpoint()
    ep.thread.start()
    yield ep
    ep.server.shutdown()
    ep.server.server_close()


def _judge(endpoint: FakeEndpoint, tmp_path: Path, sleeps: list[float] | None = None, **kw: Any) -> LLMJudge:
    config = JudgeConfig(base_url=endpoint.url, model="judge-x", api_key="sk-test", timeout=kw.pop("timeout", 5.0),
                         backoff=0.5, **kw)
    record = sleeps if sleeps is not None else []
    return LLMJudge(config, tmp_path / "cache.jsonl", sleep=record.append)


Q, A = "What is x in the equation?", "-1<AND>-5"


def test_official_prompt_and_request(endpoint, tmp_path):
    endpoint.script = [("reply", "0.5")]
    grade = _judge(endpoint, tmp_path).grade("v1_0", Q, A, "x = -1")
    assert (grade.score, grade.judge, grade.tries, grade.cached) == (0.5, "judge-x", 1, False)
    [req] = endpoint.requests
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
    assert req["body"]["model"] == "judge-x" and req["body"]["max_tokens"] == 3 and req["body"]["temperature"] == 0.0
    prompt = req["body"]["messages"][0]["content"]
    assert prompt == build_prompt(Q, A, "x = -1")
    assert prompt.endswith("\n\nWhat is x in the equation? | -1 <AND> -5 | x = -1 | ")
    assert GRADER_PROMPT.startswith("Compare the ground truth and prediction from AI models")
    assert GRADER_PROMPT.count("\n") == 11 and GRADER_PROMPT.endswith("physical characteristics. | 1.0\n")


@pytest.mark.parametrize(("content", "score"), [
    ("0.5", 0.5), ("1.0", 1.0), ("0", 0.0), ("0.8\n", 0.8), ("0.7 because", 0.7),
    (" 0.5", None),  # the official parse takes the text before the first space: ""
    ("1.5", None), ("-0.1", None), ("nan", None), ("Score: 0.5", None), ("", None), (None, None),
])
def test_parse_score_is_the_official_parse(content, score):
    assert parse_score(content) == score


def test_429_and_500_are_retried_with_backoff(endpoint, tmp_path):
    endpoint.script = [("status", 429), ("status", 500), ("status", 503, 3), ("reply", "0.9")]
    sleeps: list[float] = []
    grade = _judge(endpoint, tmp_path, sleeps).grade("v1_0", Q, A, "x = -1 or x = -5")
    assert grade.score == 0.9 and len(endpoint.requests) == 4
    assert sleeps == [0.5, 1.0, 3.0]  # exponential backoff, then the server's Retry-After


def test_timeout_is_retried(endpoint, tmp_path):
    endpoint.script = [("sleep", 1.5, "0.1"), ("reply", "0.6")]
    sleeps: list[float] = []
    grade = _judge(endpoint, tmp_path, sleeps, timeout=0.3).grade("v1_0", Q, A, "x")
    assert grade.score == 0.6 and len(endpoint.requests) == 2 and sleeps == [0.5]


def test_malformed_body_is_retried(endpoint, tmp_path):
    endpoint.script = [("raw", b"<html>bad gateway</html>"), ("raw", b'{"choices": []}'), ("reply", "0.3")]
    assert _judge(endpoint, tmp_path).grade("v1_0", Q, A, "x").score == 0.3
    assert len(endpoint.requests) == 3


def test_unrecoverable_errors_stop_with_a_clear_message(endpoint, tmp_path):
    endpoint.script = [("status", 401)]
    with pytest.raises(JudgeError, match=r"HTTP 401.*API key"):
        _judge(endpoint, tmp_path).grade("v1_0", Q, A, "x")
    assert len(endpoint.requests) == 1  # not retried
    endpoint.script = [("status", 500)] * 3
    with pytest.raises(JudgeError, match=r"failed 3 times.*HTTP 500.*offline"):
        _judge(endpoint, tmp_path, max_retries=2).grade("v1_1", Q, A, "x")


def test_garbage_reply_is_reasked_as_the_official_script_does(endpoint, tmp_path):
    endpoint.script = [("reply", "The prediction"), ("reply", "0.8")]
    grade = _judge(endpoint, tmp_path).grade("v1_0", Q, A, "x = -5 or 5")
    assert grade.score == 0.8 and grade.tries == 2
    first, second = endpoint.prompts()
    assert second == first + REASK_SUFFIX
    assert [r["body"]["temperature"] for r in endpoint.requests] == [0.0, 0.0]


def test_unparsable_after_all_tries_scores_zero(endpoint, tmp_path):
    endpoint.script = [("reply", "hmm")] * 4 + [("reply", "2.0")]
    grade = _judge(endpoint, tmp_path).grade("v1_0", Q, A, "x")
    assert (grade.score, grade.tries, grade.content) == (0.0, 5, "2.0")
    assert [r["body"]["temperature"] for r in endpoint.requests] == [0.0, 0.0, 0.5, 1.0, 1.5]


def test_cache_hit_on_rerun_sends_no_request(endpoint, tmp_path):
    endpoint.script = [("reply", "0.4"), ("reply", "0.9"), ("reply", "0.2")]
    _judge(endpoint, tmp_path).grade("v1_0", Q, A, "x = -1")
    again = _judge(endpoint, tmp_path).grade("v1_0", Q, A, "x = -1")  # a new run: a new judge object
    assert (again.score, again.cached) == (0.4, True) and len(endpoint.requests) == 1
    assert _judge(endpoint, tmp_path).grade("v1_0", Q, A, "x = -5").score == 0.9  # another prediction
    other_model = LLMJudge(JudgeConfig(base_url=endpoint.url, model="judge-y"), tmp_path / "cache.jsonl")
    assert other_model.grade("v1_0", Q, A, "x = -1").score == 0.2  # another judge model
    assert len(endpoint.requests) == 3
    rows = [json.loads(line) for line in (tmp_path / "cache.jsonl").read_text().splitlines()]
    assert [(r["qid"], r["prediction"], r["model"], r["score"]) for r in rows] == [
        ("v1_0", "x = -1", "judge-x", 0.4), ("v1_0", "x = -5", "judge-x", 0.9), ("v1_0", "x = -1", "judge-y", 0.2)]
    with (tmp_path / "cache.jsonl").open("a") as fh:
        fh.write('{"qid": "v1_9", "predic')  # an interrupted write is ignored, not fatal
    assert _judge(endpoint, tmp_path).grade("v1_0", Q, A, "x = -5").cached


def test_make_judge_reads_the_environment(tmp_path):
    assert isinstance(make_judge(tmp_path / "c.jsonl", env={}), OfflineJudge)
    env = {"LLAVA_GEMMA_JUDGE_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "k",
           "LLAVA_GEMMA_JUDGE_CACHE": str(tmp_path / "elsewhere.jsonl")}
    judge = make_judge(tmp_path / "c.jsonl", env=env)
    assert isinstance(judge, LLMJudge) and judge.name == "gpt-4-0613" and judge.config.api_key == "k"
    assert judge.cache.path == tmp_path / "elsewhere.jsonl"
    judge = make_judge(None, env={**env, "LLAVA_GEMMA_JUDGE_MODEL": "m", "LLAVA_GEMMA_JUDGE_TIMEOUT": "7"})
    assert judge.name == "m" and judge.config.timeout == 7.0
    with pytest.raises(ValueError, match="LLAVA_GEMMA_JUDGE_TIMEOUT"):
        make_judge(None, env={**env, "LLAVA_GEMMA_JUDGE_TIMEOUT": "soon"})


def test_config_choice_of_judge_overrides_the_environment(tmp_path, monkeypatch):
    env = {"LLAVA_GEMMA_JUDGE_BASE_URL": "http://127.0.0.1:9/v1"}
    assert isinstance(make_judge(tmp_path / "c.jsonl", env=env, choice="offline"), OfflineJudge)
    assert isinstance(make_judge(tmp_path / "c.jsonl", env=env, choice="endpoint"), LLMJudge)
    with pytest.raises(UserError, match="judge is 'endpoint' but LLAVA_GEMMA_JUDGE_BASE_URL is not set"):
        make_judge(tmp_path / "c.jsonl", env={}, choice="endpoint")
    monkeypatch.setenv("LLAVA_GEMMA_JUDGE_BASE_URL", "http://127.0.0.1:9/v1")  # as the toy study might inherit
    bench = MMVetBenchmark().with_options(judge="offline")
    assert isinstance(bench.judge_for(tmp_path / "c.jsonl"), OfflineJudge)
    with pytest.raises(UserError, match="unknown; choose one of offline, endpoint"):
        MMVetBenchmark().with_options(judge="gpt")
    with pytest.raises(UserError, match=r"eval.benchmarks.pope has options \['judge'\]"):
        get_benchmark("pope").with_options(judge="offline")


@pytest.mark.parametrize(("answer", "prediction", "score"), [
    ("-1<AND>-5", "x = 3", 0.0), ("-1<AND>-5", "x = -1", 0.5), ("-1<AND>-5", "x = -5 or 5", 0.5),
    ("-1<AND>-5", "x = -1 or x = -5", 1.0),  # the official prompt's own examples
    ("2<OR>two", "There are two objects.", 1.0), ("2<OR>two", "2", 1.0), ("2<OR>two", "3", 0.0),
    ("red<AND>blue", "Red and blue.", 1.0), ("red<AND>blue", "It is red.", 0.5), ("red", "tired", 0.0),
    ("top left", "The circle is at the top left.", 1.0), ("top left", "left", 0.0),
    ("cat<AND>dog<AND>cow", "a cat", 0.3), ("well-known", "It is well known.", 1.0),
    # a free-form answer: 5 of its 8 distinct words ("the" dropped, "one" as 1) -> 0.625 -> 0.6
    ("The image shows one object on a dark grey background.", "One object on a grey background.", 0.6),
])
def test_offline_and_or_scorer(answer, prediction, score):
    assert and_or_score(answer, prediction) == score


def _mmvet_root(tmp_path: Path) -> Path:
    spec = ExtraBenchmarkSpec(mme_images_per_subtask=1, mmvet_questions=6, vqav2_questions=1, mmvp_pairs=1,
                              scienceqa_image_questions=1, scienceqa_text_questions=1)
    generate_extra_benchmarks(tmp_path, random.Random(1), spec)
    return tmp_path / "benchmarks" / "mmvet"


def test_mmvet_with_the_llm_judge_records_it_and_caches(endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("LLAVA_GEMMA_JUDGE_BASE_URL", endpoint.url)
    monkeypatch.setenv("LLAVA_GEMMA_JUDGE_MODEL", "judge-x")
    monkeypatch.delenv("LLAVA_GEMMA_JUDGE_CACHE", raising=False)
    root = _mmvet_root(tmp_path)
    endpoint.script = [("reply", s) for s in ("1.0", "0.5", "0.0", "1.0", "0.5", "0.0")]
    bench = MMVetBenchmark()
    qs = bench.load(root)
    records = [bench.score(q, "an answer") for q in qs]
    m = bench.aggregate(records)
    assert m["judge"] == "judge-x" and m["score"] == pytest.approx(50.0)
    assert m["score_ci_low"] <= 50.0 <= m["score_ci_high"]
    assert all(f"{c}/score" in m for c in {c for q in qs for c in q.meta["capability"]})
    assert (root / "judge_cache.jsonl").is_file() and len(endpoint.requests) == 6
    rerun = MMVetBenchmark()  # a fresh process: everything comes from the cache
    assert [rerun.score(q, "an answer")["score"] for q in rerun.load(root)] == [r["score"] for r in records]
    assert len(endpoint.requests) == 6


def test_mmvet_offline_is_labelled(tmp_path, monkeypatch):
    monkeypatch.delenv("LLAVA_GEMMA_JUDGE_BASE_URL", raising=False)
    bench = MMVetBenchmark()
    qs = bench.load(_mmvet_root(tmp_path))
    m = bench.aggregate([bench.score(q, q.target.replace("<AND>", " and ").replace("<OR>", " or ")) for q in qs])
    assert m["judge"] == OFFLINE_NAME and m["score"] == 100.0
