"""``ask``: one question to a trained cell about an image (user-facing)."""

from __future__ import annotations

import sys
from pathlib import Path

from llava_gemma.cli.options import ARG_HELP, Commands


def cmd_ask(a) -> None:
    from llava_gemma.eval.ask import ask

    answer = ask(Path(a.model), Path(a.image) if a.image else None, a.question, suffix=a.suffix,
                 max_new_tokens=a.max_new_tokens, device=a.device)
    print(answer)
    if not answer:
        print("(empty answer: the model ended its turn at once)", file=sys.stderr)
    return None  # the answer is the output


def register(r: Commands) -> None:
    ask = r.user("ask", cmd_ask, "ask a cell a question about an image and print its greedy answer")
    ask.add_argument("model", help=ARG_HELP["model"])
    ask.add_argument("image", nargs="?", default=None, help="the image (JPEG, PNG); leave out for a text-only question")
    ask.add_argument("question", help="the question, in quotes")
    ask.add_argument("--suffix", choices=["short", "letter"], default=None,
                     help="append a benchmark's answer instruction: short (\"Answer the question using a single word "
                          "or phrase.\") or letter (\"Answer with the option's letter ...\")")
    ask.add_argument("--max-new-tokens", type=int, default=128, help="answer length cap in tokens (LLaVA's 128)")
    ask.add_argument("--device", default=None, help="cpu, cuda or hpu (default: the accelerator if there is one)")
