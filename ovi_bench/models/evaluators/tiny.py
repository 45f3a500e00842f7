"""Tiny random-weight T2I-CompBench evaluator models (BLIP VQA, OWLv2, Grounding DINO, DPT hybrid, Depth Anything).

Built in code, saved with `save_pretrained` into `cache_dir()/tiny/<name>-v1/` and loaded back through the same
`from_pretrained` code as the real checkpoints, so tests and dry runs exercise the real loading and inference paths
without any download. Every builder seeds torch with 0, so the saved weights (and the golden values in the tests) are
the same on every machine. Bump the version in a folder's name whenever its builder's output changes.

The configs follow the verified tiny configs of `shared/reference/metrics-stack.md` §4; where a tiny model mirrors a
real checkpoint's layout on purpose (BLIP's 384 px position table, DPT hybrid's 384 px table), the comment says so.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    BertConfig,
    BertTokenizer,
    BlipConfig,
    BlipForQuestionAnswering,
    BlipImageProcessorPil,
    BlipProcessor,
    DepthAnythingConfig,
    DepthAnythingForDepthEstimation,
    Dinov2Config,
    DPTConfig,
    DPTForDepthEstimation,
    DPTImageProcessorPil,
    GroundingDinoConfig,
    GroundingDinoForObjectDetection,
    GroundingDinoImageProcessorPil,
    GroundingDinoProcessor,
    Owlv2Config,
    Owlv2ForObjectDetection,
    Owlv2ImageProcessorPil,
    Owlv2Processor,
    SwinConfig,
)

from ovi_bench.io import publish_directory
from ovi_bench.models.tiny import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, tiny_tokenizer
from ovi_bench.paths import cache_dir

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

BERT_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
BLIP_DECODER_TOKEN, BLIP_ENCODER_TOKEN = "[DEC]", "[ENC]"

# Lowercase words of T2I-CompBench-like prompts, so that questions and detector queries in tests tokenize into real
# words rather than [UNK]. The exact list is part of the tiny tokenizers: changing it changes the golden values.
_TINY_WORDS = """
a an the one two three four five six seven eight of on in at to and with by near next side left right top bottom
front behind hidden under over above below beside is are this that there it its what which how many
red orange yellow green blue purple pink brown black white gray grey gold silver
round square rectangular oval triangular circular cylindrical spherical cubic big small large tiny tall short long
wooden metallic plastic glass leather fabric fluffy rubber stone paper ceramic velvet furry
cat cats dog dogs bird birds horse cow sheep bear elephant giraffe zebra mouse rabbit fish duck chicken
person people man men woman women boy girl child baby
car cars bus truck bicycle motorcycle train boat airplane
apple apples banana bananas orange carrot pizza cake bread sandwich donut cookie egg
table desk chair sofa couch bed bench lamp clock vase book books bottle cup mug bowl plate fork knife spoon
phone computer laptop television keyboard wallet bag backpack suitcase umbrella hat shoe shoes shirt
tree trees flower flowers plant grass house door window wall fence road street sky cloud sun moon
ball kite box candle key helmet painting picture mirror pillow blanket towel
cube sphere cone cylinder pyramid ring heart star
"""
_TINY_PUNCTUATION = ["?", ".", ",", "!", "'", '"', "-", "(", ")"]

TINY_BLIP_IMAGE_SIZE = 384
"""Mirrors the real `Salesforce/blip-vqa-capfilt-large` config (384 px, 16 px patches): run at 480 px, the tiny model
goes through the same position-embedding interpolation as the real one."""


TINY_BLIP_INITIALIZER_RANGE = 0.2
"""Ten times the default: with the default, every yes-probability of the tiny model is 0.393 ± 0.0002 whatever the
image and question; at 0.2 they spread over 0.1–0.5, so tests can see that inputs (and [ENC]) matter."""


def tiny_bert_tokenizer(*, with_blip_tokens: bool = True) -> BertTokenizer:
    """A lowercase WordPiece tokenizer over a few hundred whole words (no sub-words), built in code.

    With `with_blip_tokens`, [DEC] and [ENC] close the vocabulary, in that order, as BLIP's `init_tokenizer` appends
    them to bert-base-uncased (there: [DEC] = 30522, [ENC] = 30523).
    """
    words = list(dict.fromkeys([*_TINY_WORDS.split(), "yes", "no"]))
    tokens = BERT_SPECIAL_TOKENS + _TINY_PUNCTUATION + words
    if with_blip_tokens:
        tokens += [BLIP_DECODER_TOKEN, BLIP_ENCODER_TOKEN]
    return BertTokenizer(vocab={token: index for index, token in enumerate(tokens)}, do_lower_case=True)


def build_tiny_blip_vqa(folder: Path) -> None:
    """Save a tiny BlipForQuestionAnswering and its BlipProcessor, laid out like `Salesforce/blip-vqa-capfilt-large`."""
    tokenizer = tiny_bert_tokenizer()
    config = BlipConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 64,
            "encoder_hidden_size": 32,  # the vision tower's width, as in the real model (768 and 768)
            "pad_token_id": tokenizer.pad_token_id,
            "sep_token_id": tokenizer.sep_token_id,
            "bos_token_id": tokenizer.convert_tokens_to_ids(BLIP_DECODER_TOKEN),
            "initializer_range": TINY_BLIP_INITIALIZER_RANGE,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": TINY_BLIP_IMAGE_SIZE,
            "patch_size": 16,
            "initializer_range": TINY_BLIP_INITIALIZER_RANGE,
        },
    )
    torch.manual_seed(0)
    model = BlipForQuestionAnswering(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    # The real processor's preprocessing: 384 px bicubic square resize, OpenAI CLIP mean/std (the wrapper overrides
    # the size at call time).
    image_processor = BlipImageProcessorPil(
        size={"height": TINY_BLIP_IMAGE_SIZE, "width": TINY_BLIP_IMAGE_SIZE},
        image_mean=OPENAI_CLIP_MEAN,
        image_std=OPENAI_CLIP_STD,
        resample=3,
    )
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)


TINY_OWLV2_IMAGE_SIZE = 64
TINY_OWLV2_TEXT_LENGTH = 32


def build_tiny_owlv2(folder: Path) -> None:
    """Save a tiny Owlv2ForObjectDetection (64 px, 8 px patches: 64 boxes) and its Owlv2Processor."""
    tokenizer = tiny_tokenizer()
    # The real OWLv2 pads every query to 16 tokens; the tiny tokenizer spends one token per character, so it gets 32.
    tokenizer.model_max_length = TINY_OWLV2_TEXT_LENGTH
    config = Owlv2Config(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "vocab_size": 1000,
            "max_position_embeddings": TINY_OWLV2_TEXT_LENGTH,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": TINY_OWLV2_IMAGE_SIZE,
            "patch_size": 8,
        },
        projection_dim=32,  # must equal the vision width, else the class head fails with an einsum shape error
        # OWLv2 initialises its class and box heads with std = initializer_factor (1.0): the tiny model's scores
        # then saturate at 1 and its boxes collapse. At 0.1 scores spread over 0.26-0.96 and boxes are patch-sized.
        initializer_factor=0.1,
    )
    torch.manual_seed(0)
    model = Owlv2ForObjectDetection(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    image_processor = Owlv2ImageProcessorPil(
        size={"height": TINY_OWLV2_IMAGE_SIZE, "width": TINY_OWLV2_IMAGE_SIZE},
        image_mean=OPENAI_CLIP_MEAN,
        image_std=OPENAI_CLIP_STD,
    )
    Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)


TINY_GROUNDING_DINO_TEXT_LENGTH = 32


def build_tiny_grounding_dino(folder: Path) -> None:
    """Save a tiny GroundingDinoForObjectDetection (Swin backbone, no timm) and its GroundingDinoProcessor."""
    tokenizer = tiny_bert_tokenizer(with_blip_tokens=False)
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(
            embed_dim=8,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 1],
            window_size=7,
            image_size=98,
            out_indices=[2, 3, 4],
        ),
        text_config=BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=16,
            max_position_embeddings=64,
        ),
        use_timm_backbone=False,
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,  # one would break the tying of the per-layer box heads (bbox_embed.0 to bbox_embed.N)
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_queries=20,
        num_feature_levels=4,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=TINY_GROUNDING_DINO_TEXT_LENGTH,
    )
    torch.manual_seed(0)
    model = GroundingDinoForObjectDetection(config).eval()
    # Class logits are plain dot products of layer-normed 32-d vectors (std about 5.7), so the tiny model's scores
    # saturate at 1. Shrinking the decoder's output LayerNorm by 5 brings them to 0.4-0.98.
    with torch.no_grad():
        model.model.decoder.layer_norm.weight.mul_(0.2)
    model.save_pretrained(folder, safe_serialization=True)
    # The real processor resizes the short side to 800 (long side at most 1333). 128/192 keeps the tiny model cheap
    # while its coarsest (extra, stride-64) feature level keeps more than one pixel, which its GroupNorm needs.
    image_processor = GroundingDinoImageProcessorPil(
        size={"shortest_edge": 128, "longest_edge": 192}, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD
    )
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)


TINY_DPT_IMAGE_SIZE = 384
"""Mirrors `Intel/dpt-hybrid-midas` (384 px, 16 px patches), so running it at the official 480 px resizes its
position table exactly as the real model's is resized."""


def build_tiny_dpt_hybrid(folder: Path) -> None:
    """Save a tiny hybrid (BiT + ViT) DPTForDepthEstimation, the MiDaS-hybrid architecture, and its processor."""
    config = DPTConfig(
        image_size=TINY_DPT_IMAGE_SIZE,
        patch_size=16,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=37,
        is_hybrid=True,
        backbone_out_indices=[0, 1, 2, 3],
        backbone_config={
            "global_padding": "same",
            "layer_type": "bottleneck",
            "depths": [1, 1, 2],
            "hidden_sizes": [4, 8, 16, 32],
            "num_groups": 2,
            "out_features": ["stage1", "stage2", "stage3"],
        },
        # This BiT's three stages give 8, 8 and 16 channels: the last feeds the ViT (featmap channels), the first
        # two are the hybrid's residual features (the first two neck sizes).
        backbone_featmap_shape=[1, 16, TINY_DPT_IMAGE_SIZE // 16, TINY_DPT_IMAGE_SIZE // 16],
        neck_hidden_sizes=[8, 8, 32, 32],
        fusion_hidden_size=16,
        readout_type="project",
    )
    torch.manual_seed(0)
    model = DPTForDepthEstimation(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    # The real processor's settings: 384 px square, bicubic, mean = std = 0.5.
    DPTImageProcessorPil(
        size={"height": TINY_DPT_IMAGE_SIZE, "width": TINY_DPT_IMAGE_SIZE},
        keep_aspect_ratio=False,
        ensure_multiple_of=1,
        resample=3,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    ).save_pretrained(folder)


def build_tiny_depth_anything(folder: Path) -> None:
    """Save a tiny DepthAnythingForDepthEstimation (DINOv2 backbone, relative depth) and its processor."""
    config = DepthAnythingConfig(
        backbone_config=Dinov2Config(
            image_size=32,
            patch_size=16,
            hidden_size=8,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=16,
            out_indices=[1, 2],
            reshape_hidden_states=False,
        ),
        patch_size=16,
        reassemble_hidden_size=8,
        reassemble_factors=[2, 1],
        neck_hidden_sizes=[4, 8],
        fusion_hidden_size=6,
        head_hidden_size=4,
        depth_estimation_type="relative",
    )
    torch.manual_seed(0)
    model = DepthAnythingForDepthEstimation(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    # The real processor's kind of resizing (keep the aspect ratio, sides multiples of the patch size, bicubic,
    # ImageNet mean/std), at 64 px instead of 518.
    DPTImageProcessorPil(
        size={"height": 64, "width": 64},
        keep_aspect_ratio=True,
        ensure_multiple_of=16,
        resample=3,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
    ).save_pretrained(folder)


def tiny_blip_vqa_dir() -> Path:
    return publish_directory(build_tiny_blip_vqa, cache_dir() / "tiny" / "blip-vqa-v1")


def tiny_owlv2_dir() -> Path:
    return publish_directory(build_tiny_owlv2, cache_dir() / "tiny" / "owlv2-v1")


def tiny_grounding_dino_dir() -> Path:
    return publish_directory(build_tiny_grounding_dino, cache_dir() / "tiny" / "grounding-dino-v1")


def tiny_dpt_hybrid_dir() -> Path:
    return publish_directory(build_tiny_dpt_hybrid, cache_dir() / "tiny" / "dpt-hybrid-v1")


def tiny_depth_anything_dir() -> Path:
    return publish_directory(build_tiny_depth_anything, cache_dir() / "tiny" / "depth-anything-v1")


TINY_BLIP_BUILDERS = {"tiny": tiny_blip_vqa_dir}
"""Tiny references accepted wherever a BLIP VQA checkpoint is expected."""

TINY_DETECTOR_BUILDERS = {"tiny-owlv2": tiny_owlv2_dir, "tiny-grounding-dino": tiny_grounding_dino_dir}
"""Tiny detector references; each detector also accepts plain "tiny" for its own family."""

TINY_DEPTH_BUILDERS = {"tiny": tiny_dpt_hybrid_dir, "tiny-depth-anything": tiny_depth_anything_dir}
"""Tiny references accepted wherever a depth checkpoint is expected: "tiny" is DPT hybrid (the official model's
architecture), "tiny-depth-anything" the Depth Anything alternative."""
