"""The CLI's face: user-facing commands listed apart from the rules' ones, every command the rules
call still registered, one spelling of --configfile (the old --config a hidden alias), --version."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from llava_gemma.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
USER = {"plan", "estimate", "ask", "rehearse"}


def _help(capsys) -> str:
    with pytest.raises(SystemExit):
        main(["--help"])
    return capsys.readouterr().out


def test_help_lists_user_commands_apart(capsys):
    text = _help(capsys)
    listed, internal = text.split("commands the workflow's rules run")
    shown = set(re.findall(r"^    ([a-z-]+)  ", listed, flags=re.M))
    assert shown == USER
    named = set(re.findall(r"[a-z][a-z-]+", internal.split(":", 1)[1]))
    assert {"train", "launch", "evaluate", "report", "prepare", "toy-world"} <= named
    assert not named & USER


def test_every_command_the_rules_call_is_registered():
    rules = "\n".join(p.read_text() for p in [ROOT / "Snakefile", *(ROOT / "workflow" / "rules").glob("*.smk")])
    called = set(re.findall(r"llava-gemma ([a-z][a-z-]+)", rules)) - {"command", "subcommand"}
    assert len(called) > 15 and "launch" in called
    called |= {"train", "evaluate", "evaluate-cell"}  # what launch starts in each rank
    parser = build_parser()
    for name in sorted(called):
        with pytest.raises(SystemExit) as stop:  # --help exits 0 for a registered command
            parser.parse_args([name, "--help"])
        assert stop.value.code == 0, name


def test_configfile_is_the_one_spelling(capsys):
    parser = build_parser()
    assert parser.parse_args(["plan", "--configfile", "a.yaml", "b.yaml"]).configfile == ["a.yaml", "b.yaml"]
    assert parser.parse_args(["estimate", "--configfile", "a.yaml"]).configfile == "a.yaml"
    assert parser.parse_args(["estimate", "--config", "a.yaml"]).configfile == "a.yaml"  # hidden alias
    assert parser.parse_args(["estimate"]).configfile == "config.yaml"
    build = ["rehearse", "build", "--out", "m"]
    assert parser.parse_args([*build, "--config", "c.yaml"]).configfile == "c.yaml"
    for command in (["estimate"], ["plan"], ["rehearse", "build"]):
        with pytest.raises(SystemExit):
            parser.parse_args([*command, "--help"])
        text = capsys.readouterr().out
        assert "--configfile" in text and "--config " not in text and "--config\n" not in text


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert re.fullmatch(r"llava-gemma \S+.*\n", capsys.readouterr().out)
