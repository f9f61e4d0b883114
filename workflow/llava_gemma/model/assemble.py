"""Assemble an HF-native ``LlavaForConditionalGeneration`` from a language model and a tower.

The result is a plain transformers model: its folder loads with
``LlavaForConditionalGeneration.from_pretrained`` and ``AutoProcessor.from_pretrained`` with no
code of ours. The connector is HF's ``LlavaMultiModalProjector``: Linear(vision, lm), GELU,
Linear(lm, lm), which is LLaVA-1.5's ``mlp2x_gelu``. The ``linear`` connector is the same two
layers with transformers' identity activation ("linear" in ACT2FN): a linear map, and a folder
that plain ``from_pretrained`` still loads.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

from llava_gemma.model import backbones
from llava_gemma.model.chat import END_OF_TURN, GEMMA_CHAT_TEMPLATE, IMAGE_TOKEN

# Second-to-last layer of the tower, CLS dropped: the LLaVA-1.5 feature choice.
VISION_FEATURE_LAYER = -2
VISION_FEATURE_SELECT = "default"
# Connector architecture -> the projector's activation between its two layers.
CONNECTOR_ACTIVATIONS = {"mlp2x_gelu": "gelu", "linear": "linear"}
# Adding ``<image>`` grows the LM's embedding to the next multiple of this (tensor-core friendly).
EMBEDDING_MULTIPLE = 64


def prepare_tokenizer(path: str | Path):
    """Gemma's tokenizer with ``<image>`` added (if missing) and the Gemma chat template."""
    tokenizer = backbones.load_tokenizer(path)
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]},
                                     replace_additional_special_tokens=False)
    tokenizer.chat_template = GEMMA_CHAT_TEMPLATE
    return tokenizer


def build_processor(tower_path: str | Path, tokenizer) -> LlavaProcessor:
    image_processor = AutoImageProcessor.from_pretrained(tower_path)
    patch_size = backbones.vision_config_of(backbones.AutoConfig.from_pretrained(tower_path)).patch_size
    family = backbones.tower_family(tower_path)
    return processor_from_parts(image_processor, patch_size, family, tokenizer)


def processor_from_parts(image_processor, patch_size: int, family: backbones.VisionTowerFamily,
                         tokenizer) -> LlavaProcessor:
    """The LLaVA processor of a tower (from a folder or from a shipped architecture) and a tokenizer."""
    tokenizer.padding_side = "left"  # batched generation; training collates its own batches
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy=VISION_FEATURE_SELECT,
        num_additional_image_tokens=family.num_additional_tokens,
        image_token=IMAGE_TOKEN,
        chat_template=GEMMA_CHAT_TEMPLATE,
    )


def image_side(image_processor) -> tuple[int, int]:
    """(height, width) of the tower's input after resizing and cropping."""
    size = image_processor.crop_size if getattr(image_processor, "do_center_crop", False) else image_processor.size
    if "height" in size:
        return size["height"], size["width"]
    side = size.get("shortest_edge")
    return side, side


def image_token_count(processor: LlavaProcessor) -> int:
    """How many tokens ``<image>`` expands to (576 for CLIP-L/14 at 336 px, 256 for DINOv2 at 224)."""
    return image_tokens_for(processor.image_processor, processor.patch_size)


def image_tokens_for(image_processor, patch_size: int) -> int:
    height, width = image_side(image_processor)
    return (height // patch_size) * (width // patch_size)


def embedding_rows(current_rows: int, tokenizer_size: int) -> int:
    """Rows of the LM's input embedding once every token of the tokenizer fits."""
    if current_rows >= tokenizer_size:
        return current_rows
    return -(-tokenizer_size // EMBEDDING_MULTIPLE) * EMBEDDING_MULTIPLE


def llava_config(text_config, vision_config, *, image_token_index: int, image_seq_length: int,
                 connector: str = "mlp2x_gelu") -> LlavaConfig:
    """The LLaVA-1.5 wiring of an LM and a tower; the real assembly and the meta-device cells share it."""
    if connector not in CONNECTOR_ACTIVATIONS:
        raise ValueError(f"unknown connector {connector!r}; expected one of {', '.join(CONNECTOR_ACTIVATIONS)}.")
    return LlavaConfig(
        vision_config=vision_config.to_dict(),
        text_config=text_config.to_dict(),
        image_token_index=image_token_index,
        projector_hidden_act=CONNECTOR_ACTIVATIONS[connector],
        vision_feature_layer=VISION_FEATURE_LAYER,
        vision_feature_select_strategy=VISION_FEATURE_SELECT,
        image_seq_length=image_seq_length,
        tie_word_embeddings=text_config.tie_word_embeddings,
    )


def llava_shell(config: LlavaConfig) -> LlavaForConditionalGeneration:
    """The model on the meta device: every shape and parameter count, no memory, no weights.

    Under ZeRO-3 transformers would wrap the shell's sub-models in ``deepspeed.zero.Init`` and
    partition meta tensors; ``set_zero3_state`` is its own flag for "a zero.Init is already active",
    which keeps the shell a plain meta module (the loaded parts that replace its halves are partitioned)."""
    from transformers.modeling_utils import set_zero3_state

    with torch.device("meta"), set_zero3_state():
        return LlavaForConditionalGeneration(config)


def assemble_llava(lm_path: str | Path, tower_path: str | Path, dtype: torch.dtype = torch.float32,
                   attn_implementation: str | None = None,
                   connector: str = "mlp2x_gelu") -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A LLaVA model with pretrained LM and tower and a freshly initialised connector (``connector``:
    mlp2x_gelu or linear); ``attn_implementation`` (e.g. "sdpa") chooses the LM's attention kernel."""
    tokenizer = prepare_tokenizer(lm_path)
    processor = build_processor(tower_path, tokenizer)
    lm = backbones.load_language_model(lm_path, dtype, attn_implementation=attn_implementation)
    rows = lm.get_input_embeddings().num_embeddings
    if embedding_rows(rows, len(tokenizer)) != rows:
        lm.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=EMBEDDING_MULTIPLE)
    tower = backbones.load_vision_tower(tower_path, dtype)

    config = llava_config(lm.config, backbones.vision_config_of(tower.config),
                          image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                          image_seq_length=image_token_count(processor), connector=connector)
    # Build the shell on the meta device and move the loaded parts in: no second copy of a 7B LM.
    model = llava_shell(config)
    model.model.vision_tower = tower
    model.model.language_model = lm.model
    model.lm_head = lm.lm_head
    model.model.multi_modal_projector = LlavaMultiModalProjector(config).to(dtype)
    model.tie_weights()
    _set_generation_defaults(model, tokenizer)
    return model, processor


def _set_generation_defaults(model: LlavaForConditionalGeneration, tokenizer) -> None:
    """Stop at ``<end_of_turn>`` or EOS, greedy: saved with the model so plain ``generate`` agrees."""
    gen = model.generation_config
    gen.eos_token_id = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(END_OF_TURN)]
    gen.pad_token_id = tokenizer.pad_token_id
    gen.bos_token_id = tokenizer.bos_token_id
    gen.do_sample = False


def save_cell_processor(processor: LlavaProcessor, out_dir: str | Path) -> None:
    """Save a trained cell's processor with its tokenizer's EOS set to ``<end_of_turn>``.

    Clients such as lmms-eval's ``llava_hf`` pass ``eos_token_id=tokenizer.eos_token_id`` to
    ``generate``, which replaces the generation config's list; a cell ends its answers with
    ``<end_of_turn>`` and never emits ``<eos>``, so with Gemma's ``<eos>`` there they would generate
    their whole budget. Gemma 3's report gives ``<end_of_turn>`` as the instruction-tuned models' EOS;
    Google's own checkpoints keep ``<eos>`` in the tokenizer and list both in the generation config,
    which only helps clients that do not pass an id. Training keeps ``<eos>`` (stage 1's captions end
    with it): only the saved copy changes.
    """
    tokenizer = processor.tokenizer
    eos = tokenizer.eos_token
    tokenizer.eos_token = END_OF_TURN
    try:
        processor.save_pretrained(out_dir)
    finally:
        tokenizer.eos_token = eos


STAGE2_DEFAULT = ("connector", "language_model")


def set_trainable(model: LlavaForConditionalGeneration, stage: str,
                  stage2_trains: tuple[str, ...] | list[str] = STAGE2_DEFAULT) -> dict[str, int]:
    """Freeze per stage: stage1 trains the connector, stage2 the modules of ``stage2_trains``
    (LLaVA-1.5: connector + LM, the tower frozen; a level may add vision_tower or drop the LM)."""
    if stage not in ("stage1", "stage2"):
        raise ValueError(f"unknown stage {stage!r}; expected stage1 or stage2.")
    modules = {"connector": [model.model.multi_modal_projector],
               "language_model": [model.model.language_model, model.lm_head],
               "vision_tower": [model.model.vision_tower]}
    unknown = set(stage2_trains) - set(modules)
    if unknown:
        raise ValueError(f"stage2_trains names unknown modules {sorted(unknown)}; use {', '.join(modules)}.")
    model.requires_grad_(False)
    for module in modules["connector"] if stage == "stage1" else [m for k in stage2_trains for m in modules[k]]:
        module.requires_grad_(True)
    return parameter_counts(model)


def _numel(p: torch.nn.Parameter) -> int:
    """Elements of a parameter, also when ZeRO-3 has partitioned it (then ``numel`` is 0 or a shard)."""
    return getattr(p, "ds_numel", None) or p.numel()


def parameter_counts(model: LlavaForConditionalGeneration) -> dict[str, int]:
    parts = {"language_model": model.model.language_model, "vision_tower": model.model.vision_tower,
             "connector": model.model.multi_modal_projector}
    counts = {name: sum(_numel(p) for p in part.parameters()) for name, part in parts.items()}
    # Gemma ties lm_head to the input embeddings; count an untied head once.
    if model.lm_head.weight is not model.model.language_model.get_input_embeddings().weight:
        counts["language_model"] += _numel(model.lm_head.weight)
    counts["trainable"] = sum(_numel(p) for p in {id(p): p for p in model.parameters() if p.requires_grad}.values())
    return counts


def save_connector(model: LlavaForConditionalGeneration, path: str | Path) -> None:
    state = {k: v.detach().contiguous().cpu() for k, v in model.model.multi_modal_projector.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt", "module": "multi_modal_projector"})


def load_connector(model: LlavaForConditionalGeneration, path: str | Path) -> None:
    state = load_file(str(path))
    model.model.multi_modal_projector.load_state_dict(state, strict=True)
