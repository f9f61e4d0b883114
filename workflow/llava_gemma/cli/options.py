"""What the commands share: the rules' JSON settings, the runs they name, the help of shared path
options, and the registry that keeps user-facing commands apart from the ones the rules run."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Command = Callable[[argparse.Namespace], Any]


def settings(text: str) -> dict:
    """A rule's ``--settings`` (JSON from its params; Snakemake reruns the job when they change)."""
    return json.loads(text) if text else {}


def runs(a: argparse.Namespace) -> list:
    """The settings' runs: as the workflow writes them (dicts), or paper-grid cell names."""
    from llava_gemma.study.config import Cell

    return [Cell.from_dict(c) if isinstance(c, dict) else Cell.parse(c) for c in settings(a.settings)["cells"]]


# Help of the path and value options several commands share (argparse shows it under each command).
ARG_HELP = {
    "out": "where the command writes its output (file or folder, as the rule declares it)",
    "raw": "the raw data folder (data/raw)",
    "repo": "hub repository id of the model to download (describe-study: the pipeline's checkout)",
    "archive": "the zip archive to unpack",
    "folder": "a checkpoint folder written by save_pretrained (config.json, *.safetensors, tokenizer)",
    "into": "folder the archive's files go to",
    "mix": "LLaVA's llava_v1_5_mix665k.json (the OCR-VQA records it names)",
    "records": "the dataset's records (LLaVA JSON: chat.json or llava_v1_5_mix665k.json)",
    "image_root": "folder the records' image paths are relative to",
    "tokenizer": "folder of the LM whose tokenizer prepares the data",
    "format": "conversation format: plain (stage 1 captions) or gemma (chat turns)",
    "source": "source name for records that do not name one (filter report counts)",
    "stage": "stage1 (connector only) or stage2 (connector + LM)",
    "lm": "folder of the Gemma language model",
    "tower": "folder of the vision tower (CLIP or DINOv2)",
    "data": "prepared dataset folder (train) or the benchmark's raw data folder (evaluate, relevancy)",
    "work": "folder for resumable checkpoints, beside the declared outputs",
    "connector": "stage-1 connector (connector.safetensors) to start stage 2 from; omitted: a fresh connector",
    "model": "a cell's model folder (results/cells/<cell>/model)",
    "benchmark": "benchmark name (pope, gqa, mme, mmvet, vqav2, vqav2_testdev, mmvp, scienceqa_img)",
    "data_root": "folder holding one raw data folder per benchmark (data/raw/benchmarks)",
    "cells_dir": "folder of the cells' results (results/cells)",
    "results_dir": "the results folder (results)",
    "prepared_dir": "folder of the prepared datasets (data/prepared)",
}


def add_configfile(parser: argparse.ArgumentParser, *, many: bool = False, help: str = "the study config") -> None:
    """``--configfile``, Snakemake's word, for every command that reads a study config; the older
    ``--config`` stays as a hidden alias so existing command lines keep working."""
    default = ["config.yaml"] if many else "config.yaml"
    parser.add_argument("--configfile", nargs="+" if many else None, default=default,
                        help=f"{help} (default: config.yaml)")
    parser.add_argument("--config", dest="configfile", nargs="+" if many else None, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)


@dataclass
class Commands:
    """The subcommands being registered. User-facing ones are listed in ``llava-gemma --help``; the
    ones the workflow's rules run are registered without a help line and named in its epilog."""

    sub: argparse._SubParsersAction
    root: argparse.ArgumentParser
    internal: list[str] = field(default_factory=list)

    def user(self, name: str, fn: Command | None, description: str) -> argparse.ArgumentParser:
        """A user-facing command; ``fn`` None when its own subcommands set theirs."""
        parser = self.sub.add_parser(name, help=description, description=description)
        if fn is not None:
            parser.set_defaults(fn=fn)
        return parser

    def internal_command(self, name: str, fn: Command, description: str) -> argparse.ArgumentParser:
        self.internal.append(name)
        parser = self.sub.add_parser(name, description=f"{description} (run by the workflow's rules)")
        parser.set_defaults(fn=fn)
        return parser

    def rule(self, name: str, fn: Command, description: str, *paths: str) -> argparse.ArgumentParser:
        """An internal command with the rule's ``--settings`` and the path options ``paths``."""
        parser = self.internal_command(name, fn, description)
        parser.add_argument("--settings", default="", help="JSON settings from the rule's params")
        for arg in paths:
            parser.add_argument(f"--{arg}", required=arg not in ("connector",), default=None, help=ARG_HELP[arg])
        return parser
