"""Benchmark registry: every benchmark the pipeline can evaluate, by its config name.

Each entry is an instance of a ``base.Benchmark`` subclass; see the modules for each
benchmark's source files, prompt and metric (and the official scorer it reproduces).
"""

from __future__ import annotations

from .base import Benchmark, Question
from .gqa import GQABenchmark
from .mme import MMEBenchmark
from .mmvet import MMVetBenchmark
from .mmvp import MMVPBenchmark
from .pope import PopeBenchmark
from .scienceqa_img import ScienceQAImgBenchmark
from .vqav2 import VQAv2Benchmark
from .vqav2_testdev import VQAv2TestDevBenchmark

BENCHMARKS: dict[str, Benchmark] = {
    "pope": PopeBenchmark(),
    "gqa": GQABenchmark(),
    "mme": MMEBenchmark(),
    "mmvet": MMVetBenchmark(),
    "vqav2": VQAv2Benchmark(),
    "vqav2_testdev": VQAv2TestDevBenchmark(),
    "mmvp": MMVPBenchmark(),
    "scienceqa_img": ScienceQAImgBenchmark(),
}


def get_benchmark(name: str) -> Benchmark:
    """The registered benchmark called ``name``; ValueError naming the known ones otherwise."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        known = ", ".join(sorted(BENCHMARKS))
        raise ValueError(f"Unknown benchmark {name!r}; known benchmarks are: {known}.") from None


__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "GQABenchmark",
    "MMEBenchmark",
    "MMVPBenchmark",
    "MMVetBenchmark",
    "PopeBenchmark",
    "Question",
    "ScienceQAImgBenchmark",
    "VQAv2Benchmark",
    "VQAv2TestDevBenchmark",
    "get_benchmark",
]
