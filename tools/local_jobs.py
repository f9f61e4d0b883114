"""Which rules run on the submitting host under a cluster profile (network, HF_TOKEN) and which are submitted.

Snakemake 9 prints no local/cluster decision in a dry run (jobs.py: "in dryrun, we don't want to display a
decision whether local or not"), so this reads the parsed workflow instead, offline:

    python tools/local_jobs.py --configfile config.yaml
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def local_rules(configfiles: list[Path], snakefile: Path = ROOT / "Snakefile") -> tuple[set[str], set[str]]:
    """(rules run where snakemake runs, rules a cluster executor submits) of the workflow under ``configfiles``."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    with tempfile.TemporaryDirectory() as workdir, SnakemakeApi(OutputSettings(quiet=None)) as api:
        wf = api.workflow(resource_settings=ResourceSettings(), snakefile=snakefile, workdir=Path(workdir),
                          config_settings=ConfigSettings(configfiles=[Path(f).resolve() for f in configfiles]))
        workflow = wf._workflow  # the parsed rules; the API exposes no other view of localrules
        names = {rule.name for rule in workflow.rules}
        local = {r.name for r in workflow.rules if r.group is None and (r.name in workflow._localrules or r.norun)}
    return local, names - local


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", nargs="+", default=["config.yaml"])
    args = parser.parse_args()
    local, submitted = local_rules([ROOT / f if not Path(f).is_absolute() else Path(f) for f in args.configfile])
    print("on the submitting host:", ", ".join(sorted(local)))
    print("submitted as cluster jobs:", ", ".join(sorted(submitted)))


if __name__ == "__main__":
    main()
