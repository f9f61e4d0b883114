"""A no-op stand-in for the Habana runtime (``habana_frameworks.*``), so optimum-habana's own model and
generation code runs on CPU. Test-only: ``install()`` puts the fake modules into ``sys.modules`` and
``optimum.habana`` as a bare package (its ``__init__`` only re-exports and runs a Synapse version check
that shells out to ``pip list`` and ``hl-smi``); ``restore()`` puts everything back.

What the stand-in does, and nothing more:

- ``htcore.mark_step`` (lazy mode's graph cut) does nothing: on CPU every op runs eagerly anyway;
- ``wrap_in_hpu_graph(model)`` returns the model, its forward unchanged but for taking
  ``bypass_hpu_graphs`` (an HPU graph replays the same forward);
- ``FusedSDPA.apply`` is torch's ``scaled_dot_product_attention`` with the same arguments, and
  ``sdp_kernel`` a null context: the fused-attention branch of the Gaudi Gemma then runs on CPU;
- ``is_available()`` says False, ``hpu.random`` keeps no state.

``torchvision`` (absent here; Intel's Gaudi image has it) is stood in for by an empty
``torchvision.transforms`` only when it is not installed: only glm4v's tokenizer imports it, at
module level, on the way to the models we use.

Names optimum-habana imports inside ``try/except ImportError`` and that we do not use (RoPE and
RMSNorm kernels, FP8, ...) are left out on purpose, so it takes its plain-torch fallbacks.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import types

import torch

MODULES = ("habana_frameworks", "habana_frameworks.torch", "habana_frameworks.torch.core",
           "habana_frameworks.torch.hpu", "habana_frameworks.torch.hpu.random", "habana_frameworks.torch.hpex",
           "habana_frameworks.torch.hpex.kernels", "habana_frameworks.torch.utils",
           "habana_frameworks.torch.utils.experimental")

TORCHVISION = ("torchvision", "torchvision.transforms")

# What the stand-in saw: the fused-attention calls prove the Gaudi Gemma took its FusedSDPA branch.
CALLS = {"mark_step": 0, "fused_sdpa": 0, "wrap_in_hpu_graph": 0}


class FusedSDPA:
    """``FusedSDPA.apply(q, k, v, attn_mask, dropout_p, is_causal, scale, ...)`` of hpex.kernels."""

    @staticmethod
    def apply(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, *rest):
        CALLS["fused_sdpa"] += 1
        if attn_mask is not None and attn_mask.dim() == query.dim() and attn_mask.dtype != torch.bool:
            attn_mask = attn_mask.to(query.dtype)
        # Grouped-query layout (batch, kv_heads, groups, q, d) keeps the group axis in k/v as 1: broadcast.
        if key.dim() == 5:
            key, value = key.expand(-1, -1, query.shape[2], -1, -1), value.expand(-1, -1, query.shape[2], -1, -1)
        return torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask,
                                                                dropout_p=dropout_p, is_causal=is_causal, scale=scale)


def _mark_step(*args, **kwargs) -> None:
    CALLS["mark_step"] += 1


def _wrap_in_hpu_graph(module, *args, **kwargs):
    """The module, its forward taking (and ignoring) ``bypass_hpu_graphs`` as the HPU-graph wrapper does."""
    CALLS["wrap_in_hpu_graph"] += 1
    forward = module.forward

    def replay(*inputs, bypass_hpu_graphs=False, **kw):
        return forward(*inputs, **kw)

    module.forward = replay
    return module


def _module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__file__ = f"<habana stand-in {name}>"
    module.__path__ = []  # a package: submodules import from sys.modules
    module.__spec__ = importlib.util.spec_from_loader(name, loader=None, is_package=True)
    module.__dict__.update(attrs)
    return module


def fake_modules() -> dict[str, types.ModuleType]:
    random = _module("habana_frameworks.torch.hpu.random", get_rng_state=lambda *a, **k: torch.zeros(1),
                     set_rng_state=lambda *a, **k: None, manual_seed=lambda *a, **k: None,
                     get_rng_state_all=lambda: [], set_rng_state_all=lambda *a, **k: None)
    hpu = _module("habana_frameworks.torch.hpu", is_available=lambda: False, device_count=lambda: 0,
                  wrap_in_hpu_graph=_wrap_in_hpu_graph, sdp_kernel=lambda **k: contextlib.nullcontext(),
                  synchronize=lambda: None, random=random, get_device_name=lambda: "cpu stand-in",
                  memory_stats=lambda *a, **k: {}, current_device=lambda: 0)
    core = _module("habana_frameworks.torch.core", mark_step=_mark_step)
    kernels = _module("habana_frameworks.torch.hpex.kernels", FusedSDPA=FusedSDPA)
    hpex = _module("habana_frameworks.torch.hpex", kernels=kernels)
    experimental = _module("habana_frameworks.torch.utils.experimental",
                           _get_device_type=lambda: 0, synDeviceType=types.SimpleNamespace(synDeviceGaudi2=2))
    utils = _module("habana_frameworks.torch.utils", experimental=experimental)
    torch_pkg = _module("habana_frameworks.torch", core=core, hpu=hpu, hpex=hpex, utils=utils)
    root = _module("habana_frameworks", torch=torch_pkg)
    modules = {m.__name__: m for m in (root, torch_pkg, core, hpu, random, hpex, kernels, utils, experimental)}
    assert set(modules) == set(MODULES)
    return modules


def bare_optimum_habana() -> types.ModuleType:
    """``optimum.habana`` as a package whose submodules import, without running its ``__init__``."""
    import optimum

    spec = importlib.util.find_spec("optimum.habana")
    package = types.ModuleType("optimum.habana")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    package.__file__ = spec.origin
    optimum.habana = package
    return package


def install() -> dict[str, types.ModuleType | None]:
    """Fake Habana modules and a bare optimum.habana in sys.modules; returns what they replaced."""
    saved = {name: sys.modules.get(name) for name in (*MODULES, "optimum.habana", *TORCHVISION)}
    sys.modules.update(fake_modules())
    if importlib.util.find_spec("torchvision") is None:
        transforms = _module("torchvision.transforms")
        sys.modules.update({"torchvision": _module("torchvision", transforms=transforms),
                            "torchvision.transforms": transforms})
    sys.modules["optimum.habana"] = bare_optimum_habana()
    for key in CALLS:
        CALLS[key] = 0
    return saved


def restore(saved: dict[str, types.ModuleType | None]) -> None:
    """Undo ``install`` and drop every optimum.habana module imported meanwhile."""
    for name in [n for n in sys.modules if n.startswith("optimum.habana.")]:
        del sys.modules[name]
    for name, module in saved.items():
        if module is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = module
