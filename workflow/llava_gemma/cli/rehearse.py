"""``rehearse``: loopback stand-ins of every source a config names (user-facing); registered without
importing torch (every CLI call builds the parser)."""

from __future__ import annotations

from pathlib import Path

from llava_gemma.cli.options import Commands, add_configfile


def _build(a) -> dict:
    from llava_gemma.rehearsal.build import build_mirror

    return build_mirror(Path(a.out), Path(a.configfile), a.seed)


def _serve(a) -> None:
    from llava_gemma.rehearsal.build import serve

    serve(Path(a.root), a.port)


def _run(a) -> dict:
    from llava_gemma.rehearsal.run import run_rehearsal

    return run_rehearsal(Path(a.repo), Path(a.mirror), Path(a.workdir), cores=a.cores)


def register(r: Commands) -> None:
    """``rehearse build``, ``serve`` and ``run`` (see rehearsal/build.py)."""
    parser = r.user("rehearse", None,  # a subcommand is required: build, serve or run
                    "loopback stand-ins of every source a config names (docs/rehearsal.md)")
    inner = parser.add_subparsers(dest="rehearse_command", required=True,
                                  help="build the stand-ins, serve them, or serve them and run a study")
    build = inner.add_parser("build", help="generate tiny stand-ins of every model and download in their real layouts")
    add_configfile(build, help="the study config whose sources to stand in for")
    build.add_argument("--out", required=True, help="the mirror's folder")
    build.add_argument("--seed", type=int, default=0)
    build.set_defaults(fn=_build)
    serve = inner.add_parser("serve", help="serve a built mirror on 127.0.0.1: a Hub endpoint and a URL mirror")
    serve.add_argument("--root", required=True, help="a folder `rehearse build` wrote")
    serve.add_argument("--port", type=int, default=8765)
    serve.set_defaults(fn=_serve)
    run = inner.add_parser("run", help="serve a built mirror and run the whole study against it (config.yaml + "
                                       "rehearsal.yaml); prints wall time and jobs per rule")
    run.add_argument("--mirror", required=True, help="a folder `rehearse build` wrote")
    run.add_argument("--workdir", required=True, help="an empty folder to run the study in")
    run.add_argument("--repo", default=".", help="the checkout holding Snakefile, config.yaml, rehearsal.yaml")
    run.add_argument("--cores", type=int, default=2)
    run.set_defaults(fn=_run)
