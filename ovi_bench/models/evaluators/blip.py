"""BLIP VQA yes-probabilities, computed as T2I-CompBench's B-VQA (`BLIPvqa_eval`, inference mode `vqa_prob`) does.

The official per-question score is not generated text: the image is encoded, the question is encoded with image
cross-attention, the answer decoder takes one step from [DEC], and the score is P(yes) / (P(yes) + P(no)) from the
softmax over the vocabulary at that first position. transformers 5's `BlipForQuestionAnswering.forward` returns no
decoder logits, so this goes through its sub-modules (vision_model, text_encoder, text_decoder).

Two details checked against the official code (Karine-Huang/T2I-CompBench `BLIPvqa_eval/models/blip_vqa.py`):

* [ENC]: the official code tokenizes the question with bert-base-uncased ([CLS] question [SEP], padded to the
  longest question, truncated to 35 tokens) and then overwrites the first token, [CLS], with [ENC]. transformers'
  BLIP does not: `BlipProcessor` gives [CLS] first and `BlipForQuestionAnswering` passes it on unchanged (its
  conversion script tested the VQA model with a plain bert-base-uncased tokenizer). The checkpoint's embedding
  table holds [ENC] (vocab_size 30524), so this wrapper overwrites the first token with [ENC] exactly as the official
  code does. [ENC] is looked up in the tokenizer; a tokenizer without it (the hub's has only BERT's 30522 tokens)
  gets BLIP's own numbering, [DEC] = bos_token_id and [ENC] = [DEC] + 1, after checking that the model's vocabulary
  has room for it.
* Resolution: the official code resizes to 480×480 (bicubic, OpenAI CLIP mean/std). transformers 5.24 supports
  `interpolate_pos_encoding` for BLIP, so this wrapper resizes to `image_size` (default 480) and interpolates the
  position table (bicubic, align_corners=False: the same rule as the official `interpolate_pos_embed`). Remaining
  deviation: transformers' conversion script built the VQA model at 384 px, and BLIP's `load_checkpoint` then
  shrinks the fine-tuned 480 px checkpoint's 30×30 position table to 24×24 (bicubic); interpolating that back to
  30×30 approximates, but does not equal, the official table. Only the original .pth checkpoint would remove this.

A third one turned up while testing: transformers 5.24's BLIP text layers ignore cross-attention masks, so a padded
question would attend to its padding (the official decoder masks it). Questions are therefore run in groups of equal
length, without padding, which gives the official result whatever the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from transformers import (
    BertTokenizer,
    BlipConfig,
    BlipForQuestionAnswering,
    BlipImageProcessorPil,
    BlipProcessor,
    PreTrainedTokenizerBase,
)
from transformers.image_utils import PILImageResampling
from transformers.models.blip.configuration_blip import BlipTextConfig

from ovi_bench.io import publish_directory
from ovi_bench.models.clip import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from ovi_bench.models.evaluators.common import check_one_entry_per_image, rgb_images
from ovi_bench.models.hub import load_pretrained, resolve_model
from ovi_bench.paths import cache_dir

BLIP_VQA_ID = "Salesforce/blip-vqa-capfilt-large"
"""The official B-VQA checkpoint (`model_base_vqa_capfilt_large.pth`, ViT-B despite "large") converted to transformers."""

OFFICIAL_BLIP_IMAGE_SIZE = 480
"""`image_size` of T2I-CompBench's `BLIPvqa_eval/configs/vqa.yaml`."""

OFFICIAL_QUESTION_MAX_TOKENS = 35
"""The official question tokenization: `tokenizer(question, padding='longest', truncation=True, max_length=35)`."""


def blip_encoder_token_id(tokenizer: PreTrainedTokenizerBase, text_config: BlipTextConfig) -> int:
    """The id of [ENC], the token the official BLIP puts in place of a question's [CLS].

    BLIP's `init_tokenizer` appends [DEC] (the decoder's bos token) and then [ENC] to bert-base-uncased, so
    [ENC] = [DEC] + 1. A tokenizer that knows [ENC] is trusted; one that does not (transformers' hub tokenizers for
    BLIP are plain bert-base-uncased) gets that numbering, checked against the model's config.
    """
    encoder_id = tokenizer.convert_tokens_to_ids(BLIP_ENCODER_TOKEN)
    if encoder_id is not None and encoder_id != tokenizer.unk_token_id:
        return int(encoder_id)
    decoder_id = text_config.bos_token_id
    known_decoder_id = tokenizer.convert_tokens_to_ids(BLIP_DECODER_TOKEN)
    if known_decoder_id not in (None, tokenizer.unk_token_id) and known_decoder_id != decoder_id:
        raise ValueError(
            f"the tokenizer's {BLIP_DECODER_TOKEN} is {known_decoder_id} but the model starts decoding from "
            f"{decoder_id}: this is not BLIP's token layout, so the id of {BLIP_ENCODER_TOKEN} is unknown."
        )
    encoder_id = decoder_id + 1
    if encoder_id >= text_config.vocab_size or encoder_id < len(tokenizer):
        raise ValueError(
            f"cannot place {BLIP_ENCODER_TOKEN} at {encoder_id} (= {BLIP_DECODER_TOKEN} + 1): the model's vocabulary "
            f"has {text_config.vocab_size} entries and the tokenizer {len(tokenizer)}; BLIP's layout puts "
            f"{BLIP_DECODER_TOKEN} and {BLIP_ENCODER_TOKEN} right after the tokenizer's vocabulary."
        )
    return encoder_id


def _token_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise ValueError(f"the BLIP tokenizer has no token {token!r}, which the yes-probability needs.")
    return int(token_id)


class BlipVQA:
    """P(yes) / (P(yes) + P(no)) from BLIP VQA's first answer token, per image and question (official `vqa_prob`)."""

    def __init__(
        self,
        model: str = BLIP_VQA_ID,
        *,
        device: torch.device,
        dtype: torch.dtype,
        image_size: int = OFFICIAL_BLIP_IMAGE_SIZE,
    ) -> None:
        """`model`: a hub id, a local folder or "tiny". `image_size`: the square side images are resized to."""
        if image_size <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self.device = device
        self.dtype = dtype
        self.image_size = image_size
        source = resolve_model(model, TINY_BLIP_BUILDERS)
        self.model = load_pretrained(BlipForQuestionAnswering, source, dtype=dtype).to(device).eval()
        self.processor = load_pretrained(BlipProcessor, source)
        tokenizer = self.processor.tokenizer
        text_config = self.model.config.text_config
        self.encoder_token_id = blip_encoder_token_id(tokenizer, text_config)
        self.decoder_start_token_id = int(text_config.bos_token_id)
        self.yes_token_id = _token_id(tokenizer, "yes")
        self.no_token_id = _token_id(tokenizer, "no")
        vision_config = self.model.config.vision_config
        if image_size % vision_config.patch_size:
            raise ValueError(
                f"image_size {image_size} is not a multiple of the patch size {vision_config.patch_size}"
            )
        # Resizing the position table is needed (and done) only when the input differs from the trained size.
        self.interpolate_pos_encoding = image_size != vision_config.image_size

    def pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """The official transform: bicubic resize to an `image_size` square, the checkpoint's (CLIP) normalisation."""
        pixels = self.processor.image_processor(
            images=rgb_images(images),
            size={"height": self.image_size, "width": self.image_size},
            resample=PILImageResampling.BICUBIC,
            return_tensors="pt",
        )
        return pixels["pixel_values"].to(self.device, self.dtype)

    def question_tokens(self, questions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Input ids and attention mask of the questions, tokenized as the official code does, [CLS] → [ENC]."""
        tokens = self.processor.tokenizer(
            list(questions),
            padding="longest",
            truncation=True,
            max_length=OFFICIAL_QUESTION_MAX_TOKENS,
            return_tensors="pt",
        )
        input_ids = tokens["input_ids"].clone()
        cls_token_id = self.processor.tokenizer.cls_token_id
        if not bool((input_ids[:, 0] == cls_token_id).all()):
            raise ValueError(
                "the BLIP tokenizer does not start questions with [CLS]; cannot replace it with [ENC]."
            )
        input_ids[:, 0] = self.encoder_token_id
        return input_ids.to(self.device), tokens["attention_mask"].to(self.device)

    @torch.inference_mode()
    def yes_probabilities(
        self, images: Sequence[Image.Image], questions: Sequence[Sequence[str]]
    ) -> list[list[float]]:
        """For each image, P(yes)/(P(yes)+P(no)) of each of its questions (questions are used verbatim).

        Every image goes through the vision tower once; its embeddings are repeated for each of its questions.
        """
        check_one_entry_per_image(images, questions, "questions")
        counts = [len(image_questions) for image_questions in questions]
        flat_questions = [question for image_questions in questions for question in image_questions]
        if not flat_questions:
            return [[] for _ in images]
        for question in flat_questions:
            if not isinstance(question, str) or not question.strip():
                raise ValueError(f"questions must be non-empty strings, got {question!r}")

        asked = [index for index, count in enumerate(counts) if count > 0]
        vision = self.model.vision_model(
            pixel_values=self.pixel_values([images[index] for index in asked]),
            interpolate_pos_encoding=self.interpolate_pos_encoding,
        )
        repeats = torch.tensor([counts[index] for index in asked], device=self.device)
        image_embeds = vision.last_hidden_state.repeat_interleave(repeats, dim=0)

        input_ids, attention_mask = self.question_tokens(flat_questions)
        lengths = attention_mask.sum(dim=1)
        yes_probability = torch.empty(len(flat_questions), dtype=torch.float32)
        # One pass per question length, each without padding. The official decoder attends to the question states
        # through the question's padding mask, but transformers 5.24's BLIP text layers drop cross-attention masks
        # (BlipTextLayer hands `encoder_attention_mask` to the cross-attention as `attention_mask`, which
        # BlipTextSelfAttention then replaces with its own, unset, `encoder_attention_mask`): padded questions
        # would attend to their padding. Without padding, no mask is needed and the result is the official one.
        for length in lengths.unique().tolist():
            rows = (lengths == length).nonzero(as_tuple=True)[0]
            yes_probability[rows.cpu()] = self._yes_probabilities_of_equal_length(
                image_embeds[rows], input_ids[rows, :length]
            )
        flat_scores = yes_probability.tolist()

        scores: list[list[float]] = []
        start = 0
        for count in counts:
            scores.append(flat_scores[start : start + count])
            start += count
        return scores

    def _yes_probabilities_of_equal_length(
        self, image_embeds: torch.Tensor, input_ids: torch.Tensor
    ) -> torch.Tensor:
        """Yes-probabilities of unpadded questions (all of one length), each with its image's embeddings."""
        image_attention_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=self.device)
        question_attention_mask = torch.ones(input_ids.shape, dtype=torch.long, device=self.device)
        question_states = self.model.text_encoder(
            input_ids=input_ids,
            attention_mask=question_attention_mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_attention_mask,
        ).last_hidden_state
        # The answer decoder takes one step from the start token [DEC]; the first position's distribution decides.
        start_ids = torch.full((len(input_ids), 1), self.decoder_start_token_id, device=self.device)
        logits = self.model.text_decoder(
            input_ids=start_ids,
            encoder_hidden_states=question_states,
            encoder_attention_mask=question_attention_mask,
        ).logits[:, 0, :]
        probabilities = torch.softmax(logits.float(), dim=-1)
        yes = probabilities[:, self.yes_token_id]
        no = probabilities[:, self.no_token_id]
        return (yes / (yes + no)).cpu()


# ---------------------------------------------------------------------------------------------------------------------
# Tiny random-weight BLIP VQA, built in code, saved with `save_pretrained` into `cache_dir()/tiny/<name>-v1/` and
# loaded back through the same `from_pretrained` code as the real checkpoints. Every builder seeds torch with 0, so
# the saved weights (and the tests' golden values) are the same on every machine; bump a folder's version whenever
# its builder's output changes. The configs follow shared/reference/metrics-stack.md §4.


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


def tiny_blip_vqa_dir() -> Path:
    return publish_directory(build_tiny_blip_vqa, cache_dir() / "tiny" / "blip-vqa-v1")


TINY_BLIP_BUILDERS = {"tiny": tiny_blip_vqa_dir}
"""Tiny references accepted wherever a BLIP VQA checkpoint is expected."""
