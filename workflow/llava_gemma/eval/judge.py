"""MM-Vet's grader: an LLM judge over an OpenAI-compatible chat endpoint, or an offline stand-in.

LLM judge (used when ``LLAVA_GEMMA_JUDGE_BASE_URL`` is set)
    ``POST {base_url}/chat/completions`` with MM-Vet's official few-shot grader prompt (from
    ``mm-vet_evaluator.py``): the prompt, then "question | ground truth | prediction | " with
    " <AND> "/" <OR> " spaced out, ``max_tokens`` 3, temperature 0. A reply is parsed as the
    official script does (the text before the first space as a float in [0, 1]); an unparsable
    reply is re-asked with "Predict the correctness of the answer (digit): " appended, at
    temperatures 0.0, 0.5, 1.0, ... until ``max_tries`` replies (5, the official budget of parsed
    replies) have been read; then the score is 0.0. HTTP 429, 5xx, timeouts, connection errors and
    malformed bodies are retried with exponential backoff (``Retry-After`` honoured); other HTTP
    errors stop with a clear message. Every judged answer is appended to a JSON-lines cache keyed
    by (question id, prediction, judge model), so a rerun never asks again.

    Environment: ``LLAVA_GEMMA_JUDGE_BASE_URL`` (e.g. https://api.openai.com/v1),
    ``LLAVA_GEMMA_JUDGE_MODEL`` (default gpt-4-0613, the model of the MM-Vet paper),
    ``LLAVA_GEMMA_JUDGE_API_KEY`` or ``OPENAI_API_KEY``, ``LLAVA_GEMMA_JUDGE_TIMEOUT`` (seconds),
    ``LLAVA_GEMMA_JUDGE_CACHE`` (cache file; default: beside the MM-Vet data).

Offline judge ("offline-and-or")
    A deterministic reading of MM-Vet's answer format: the ground truth's <OR> alternatives are
    scored separately and the best counts; within one, the share of its <AND> elements found in
    the prediction (lower-cased, punctuation dropped, number words as digits, whole-word match),
    rounded to 0.1 like the judge's scale. An element longer than 5 words (a free-form answer)
    counts by the share of its distinct words found instead. It is not the official metric: the
    metrics record which judge produced a score.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from llava_gemma.errors import UserError

DEFAULT_MODEL = "gpt-4-0613"
OFFLINE_NAME = "offline-and-or"
REASK_SUFFIX = "\nPredict the correctness of the answer (digit): "
_INSTRUCTION = (
    "Compare the ground truth and prediction from AI models, to give a correctness score for the prediction. "
    "<AND> in the ground truth means it is totally right only when all elements in the ground truth are present "
    "in the prediction, and <OR> means it is totally right when any one element in the ground truth is present "
    "in the prediction. The correctness score is 0.0 (totally wrong), 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, "
    "0.9, or 1.0 (totally right). Just complete the last space of the correctness score."
)
_MEME_QUESTION = "Can you explain this meme?"
_MEME_TRUTH = (
    "This meme is poking fun at the fact that the names of the countries Iceland and Greenland are misleading. "
    "Despite its name, Iceland is known for its beautiful green landscapes, while Greenland is mostly covered in "
    "ice and snow. The meme is saying that the person has trust issues because the names of these countries do "
    "not accurately represent their landscapes."
)
_EXAMPLES = (
    ("What is x in the equation?", "-1 <AND> -5", "x = 3", "0.0"),
    ("What is x in the equation?", "-1 <AND> -5", "x = -1", "0.5"),
    ("What is x in the equation?", "-1 <AND> -5", "x = -5", "0.5"),
    ("What is x in the equation?", "-1 <AND> -5", "x = -5 or 5", "0.5"),
    ("What is x in the equation?", "-1 <AND> -5", "x = -1 or x = -5", "1.0"),
    (_MEME_QUESTION, _MEME_TRUTH,
     "The meme talks about Iceland and Greenland. It's pointing out that despite their names, Iceland is not "
     "very icy and Greenland isn't very green.", "0.4"),
    (_MEME_QUESTION, _MEME_TRUTH,
     "The meme is using humor to point out the misleading nature of Iceland's and Greenland's names. Iceland, "
     "despite its name, has lush green landscapes while Greenland is mostly covered in ice and snow. The text "
     "'This is why I have trust issues' is a playful way to suggest that these contradictions can lead to "
     "distrust or confusion. The humor in this meme is derived from the unexpected contrast between the names "
     "of the countries and their actual physical characteristics.", "1.0"),
)
# MM-Vet's official few-shot grader prompt, verbatim (mm-vet_evaluator.py).
GRADER_PROMPT = (
    _INSTRUCTION + "\n\nQuestion | Ground truth | Prediction | Correctness\n--- | --- | --- | ---\n"
    + "".join(" | ".join(row) + "\n" for row in _EXAMPLES)
)


class JudgeError(RuntimeError):
    """The judge endpoint could not be used (refused, unreachable after all retries)."""


@dataclass(frozen=True)
class Grade:
    score: float
    judge: str  # the judge model, or OFFLINE_NAME
    content: str = ""  # the judge's last reply
    tries: int = 0  # judge replies read (0 for the offline judge and for cache hits)
    cached: bool = False


class Judge(Protocol):
    name: str

    def grade(self, qid: str, question: str, answer: str, prediction: str) -> Grade: ...


def build_prompt(question: str, answer: str, prediction: str) -> str:
    """The official grader prompt for one answer (the last column left for the judge)."""
    truth = answer.replace("<AND>", " <AND> ").replace("<OR>", " <OR> ")
    return GRADER_PROMPT + "\n" + " | ".join([question, truth, prediction, ""])


def parse_score(content: str | None) -> float | None:
    """The official parse: the text before the first space as a float in [0, 1], else None."""
    try:
        value = float((content or "").split(" ")[0].strip())
    except ValueError:
        return None
    return value if 0.0 <= value <= 1.0 and not math.isnan(value) else None


@dataclass(frozen=True)
class JudgeConfig:
    base_url: str
    model: str = DEFAULT_MODEL
    api_key: str | None = None
    timeout: float = 60.0
    max_retries: int = 8  # transport retries per request
    backoff: float = 2.0  # first retry delay in seconds, doubled each time
    max_backoff: float = 60.0
    max_tries: int = 5  # judge replies read per answer (the official re-ask budget)
    max_tokens: int = 3

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> JudgeConfig | None:
        """The endpoint configured in the environment, or None (offline) if no base URL is set."""
        env = os.environ if env is None else env
        base_url = env.get("LLAVA_GEMMA_JUDGE_BASE_URL", "").strip()
        if not base_url:
            return None
        timeout = env.get("LLAVA_GEMMA_JUDGE_TIMEOUT", "60")
        try:
            seconds = float(timeout)
        except ValueError:
            raise ValueError(f"LLAVA_GEMMA_JUDGE_TIMEOUT={timeout!r} is not a number of seconds; fix it.") from None
        return cls(base_url=base_url, model=env.get("LLAVA_GEMMA_JUDGE_MODEL", "").strip() or DEFAULT_MODEL,
                   api_key=env.get("LLAVA_GEMMA_JUDGE_API_KEY") or env.get("OPENAI_API_KEY") or None,
                   timeout=seconds)


class JudgeCache:
    """Append-only JSON-lines file of judged answers, keyed by (qid, prediction, model)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[tuple[str, str, str], dict] = {}
        if path is not None and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self._entries[row["qid"], row["prediction"], row["model"]] = row
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # e.g. a line cut short by an interrupted run: judged again

    def get(self, qid: str, prediction: str, model: str) -> dict | None:
        return self._entries.get((qid, prediction, model))

    def put(self, row: dict) -> None:
        self._entries[row["qid"], row["prediction"], row["model"]] = row
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")


class LLMJudge:
    """MM-Vet's GPT grader over any OpenAI-compatible chat endpoint."""

    def __init__(self, config: JudgeConfig, cache_path: Path | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config, self.name, self._sleep = config, config.model, sleep
        self.cache = JudgeCache(cache_path)
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        host = urllib.parse.urlparse(self.url).hostname or ""
        # A local endpoint is reached directly, whatever proxy the environment names.
        handlers = [urllib.request.ProxyHandler({})] if host in ("127.0.0.1", "localhost", "::1") else []
        self._opener = urllib.request.build_opener(*handlers)
        self.requests = 0  # HTTP requests sent, for tests and logs

    def grade(self, qid: str, question: str, answer: str, prediction: str) -> Grade:
        if (hit := self.cache.get(qid, prediction, self.name)) is not None:
            return Grade(float(hit["score"]), self.name, hit.get("content", ""), 0, cached=True)
        prompt = build_prompt(question, answer, prediction)
        content = self._chat(prompt, 0.0)
        score, tries, temperature = parse_score(content), 1, 0.0
        while score is None and tries < self.config.max_tries:
            content = self._chat(prompt + REASK_SUFFIX, temperature)
            score, tries, temperature = parse_score(content), tries + 1, temperature + 0.5
        final = 0.0 if score is None else score
        self.cache.put({"qid": qid, "prediction": prediction, "model": self.name, "score": final,
                        "content": content, "tries": tries})
        return Grade(final, self.name, content, tries)

    def _chat(self, prompt: str, temperature: float) -> str:
        body = json.dumps({"model": self.config.model, "messages": [{"role": "user", "content": prompt}],
                           "max_tokens": self.config.max_tokens, "temperature": temperature}).encode()
        headers = {"Content-Type": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        last = ""
        for attempt in range(self.config.max_retries + 1):
            delay = min(self.config.max_backoff, self.config.backoff * 2**attempt)
            try:
                self.requests += 1
                request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
                with self._opener.open(request, timeout=self.config.timeout) as response:
                    payload = json.loads(response.read().decode("utf-8"))
                content = payload["choices"][0]["message"]["content"]
                return content if isinstance(content, str) else ""
            except urllib.error.HTTPError as err:
                if err.code != 429 and err.code < 500:
                    raise JudgeError(f"MM-Vet judge: {self.url} answered HTTP {err.code} ({err.reason}); check "
                                     "LLAVA_GEMMA_JUDGE_BASE_URL, LLAVA_GEMMA_JUDGE_MODEL and the API key.") from err
                last = f"HTTP {err.code}"
                retry_after = err.headers.get("Retry-After") if err.headers else None
                if retry_after and retry_after.strip().replace(".", "", 1).isdigit():
                    delay = min(self.config.max_backoff, float(retry_after))
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                last = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError) as err:
                last = f"malformed response body ({type(err).__name__})"
            if attempt < self.config.max_retries:
                self._sleep(delay)
        raise JudgeError(f"MM-Vet judge: {self.url} failed {self.config.max_retries + 1} times (last: {last}); "
                         "check the endpoint or unset LLAVA_GEMMA_JUDGE_BASE_URL to score offline.")


# ------------------------------------------------------------------------------ offline judge

_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split())}
_ARTICLES = {"a", "an", "the"}


def _words(text: str) -> list[str]:
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text.lower())  # keep decimal points only
    text = re.sub(r"[^a-z0-9.\-\s]", " ", text)
    text = re.sub(r"(?<=[^\s\d])-|-(?!\d)", " ", text)  # keep minus signs (a '-' before a digit) only
    return [_NUMBER_WORDS.get(w, w) for w in text.split() if w not in _ARTICLES]


def _element_score(element: list[str], prediction: list[str]) -> float:
    if not element:
        return 0.0
    if len(element) > 5:  # a free-form answer: share of its distinct words that the prediction has
        return len(set(element) & set(prediction)) / len(set(element))
    n = len(element)
    return float(any(prediction[i:i + n] == element for i in range(len(prediction) - n + 1)))


def and_or_score(answer: str, prediction: str) -> float:
    """Deterministic MM-Vet score of ``prediction`` against an <AND>/<OR> ground truth."""
    pred = _words(prediction)
    best = 0.0
    for alternative in answer.split("<OR>"):
        elements = [_words(e) for e in alternative.split("<AND>") if e.strip()]
        if elements:
            best = max(best, sum(_element_score(e, pred) for e in elements) / len(elements))
    return round(best, 1)


class OfflineJudge:
    name = OFFLINE_NAME

    def grade(self, qid: str, question: str, answer: str, prediction: str) -> Grade:
        return Grade(and_or_score(answer, prediction), OFFLINE_NAME)


JUDGE_CHOICES = ("offline", "endpoint")


def check_judge_choice(choice: str | None) -> str | None:
    if choice not in (None, *JUDGE_CHOICES):
        raise UserError(f"MM-Vet judge {choice!r} is unknown; choose one of {', '.join(JUDGE_CHOICES)}.")
    return choice


def make_judge(cache_path: Path | None = None, env: Mapping[str, str] | None = None,
               choice: str | None = None) -> Judge:
    """The judge the config chooses (``eval.benchmarks.mmvet.judge``): "offline" always the offline
    judge, "endpoint" the LLM judge (its endpoint must be set), unset the LLM judge if the
    environment configures one, else the offline judge. The LLM judge caches at
    ``LLAVA_GEMMA_JUDGE_CACHE`` or ``cache_path``."""
    if check_judge_choice(choice) == "offline":
        return OfflineJudge()
    config = JudgeConfig.from_env(env)
    if config is None:
        if choice == "endpoint":
            raise UserError("eval.benchmarks.mmvet.judge is 'endpoint' but LLAVA_GEMMA_JUDGE_BASE_URL is not set; "
                            "set it to an OpenAI-compatible endpoint or choose judge: offline.")
        return OfflineJudge()
    env = os.environ if env is None else env
    override = env.get("LLAVA_GEMMA_JUDGE_CACHE", "").strip()
    return LLMJudge(config, Path(override) if override else cache_path)
