"""The ``hf`` encoder across model families (tiny random-weight configs) and ``minilm``."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from polymodal import registry
from polymodal.encoders import HFEncoder, MiniLM
from polymodal.encoders.hf import minilm_path

TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 37,
}
VIT = {"model_type": "vit", **TINY, "image_size": 32, "patch_size": 8}
CLIP_VISION = {"model_type": "clip_vision_model", **TINY, "image_size": 32, "patch_size": 8}
CLIP = {
    "model_type": "clip",
    "vision_config": {**TINY, "image_size": 32, "patch_size": 8},
    "text_config": TINY,
}
RESNET = {"model_type": "resnet", "embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1]}
CONVNEXT = {"model_type": "convnext", "hidden_sizes": [8, 16], "depths": [1, 1], "num_stages": 2}
WAV2VEC2 = {
    "model_type": "wav2vec2",
    **TINY,
    "conv_dim": [16, 16],
    "conv_stride": [5, 4],
    "conv_kernel": [10, 8],
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
}
AST = {
    "model_type": "audio-spectrogram-transformer",
    **TINY,
    "num_mel_bins": 16,
    "max_length": 32,
    "patch_size": 8,
    "frequency_stride": 8,
    "time_stride": 8,
}
BERT = {"model_type": "bert", **TINY, "vocab_size": 30522}


def build(modality: str, config: dict[str, Any], **kwargs: Any) -> HFEncoder:
    torch.manual_seed(0)
    encoder: HFEncoder = registry.build(
        "encoder", {"type": "hf", "config": config, **kwargs}, modality=modality, pad_id=0
    )
    return encoder


@pytest.mark.parametrize(
    ("config", "out_dim", "spec"),
    [
        (VIT, 32, {"channels": 3, "image_size": 32}),
        (CLIP_VISION, 32, {"channels": 3, "image_size": 32}),
        (CLIP, 32, {"channels": 3, "image_size": 32}),
        (RESNET, 16, {"channels": 3}),
        (CONVNEXT, 16, {"channels": 3, "image_size": 224}),
    ],
    ids=["vit", "clip_vision", "clip_tower", "resnet", "convnext"],
)
def test_image_models(config: dict[str, Any], out_dim: int, spec: dict[str, Any]) -> None:
    encoder = build("image", config)
    assert encoder.out_dim == out_dim
    assert HFEncoder.input_spec({"config": config}) == spec
    out = encoder(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, out_dim)
    assert encoder(torch.randn(2, 1, 32, 32)).shape == (2, out_dim)  # grayscale is repeated
    out.sum().backward()
    first = next(encoder.parameters())  # the input embedding / stem: gradients go all the way
    assert first.grad is not None and first.grad.abs().sum() > 0


def test_cnn_pooler_output_is_flattened() -> None:
    encoder = build("image", RESNET, pooling="pooler")
    assert encoder(torch.randn(2, 3, 32, 32)).shape == (2, 16)


def test_clip_text_tower() -> None:
    encoder = build("text", CLIP, vocab_size=99)
    assert HFEncoder.input_spec({"config": CLIP, "modality": "text"}) == {"max_length": 128}
    assert encoder.model.get_input_embeddings().num_embeddings == 99  # sized to our vocabulary
    assert encoder(torch.randint(1, 99, (2, 6))).shape == (2, 32)


def test_wav2vec2_reads_waveforms() -> None:
    encoder = build("audio", WAV2VEC2)
    assert HFEncoder.input_spec({"config": WAV2VEC2}) == {"features": "waveform"}
    wave = torch.randn(2, 800)
    wave[1] = 0  # a missing clip
    out = encoder(wave)
    assert out.shape == (2, 32) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="waveform"):
        encoder(torch.randn(2, 16, 20))


@pytest.mark.parametrize("frames", [20, 32, 50])
def test_ast_pads_or_crops_log_mels(frames: int) -> None:
    encoder = build("audio", AST)
    assert HFEncoder.input_spec({"config": AST}) == {"n_mels": 16}
    assert encoder(torch.randn(2, 16, frames)).shape == (2, 32)  # our layout (B, n_mels, T)


def test_bert_spec_uses_minilm_tokenizer_and_pooling_options() -> None:
    spec = HFEncoder.input_spec({"config": BERT, "max_length": 64})
    assert spec == {"tokenizer": minilm_path(), "max_length": 64}
    x = torch.randint(1, 30522, (2, 9))
    for pooling in ("cls", "pooler"):
        assert build("text", BERT, pooling=pooling)(x).shape == (2, 32)
    assert build("text", BERT, max_length=4)(x).shape == (2, 32)  # truncates, no error
    with pytest.raises(ValueError, match="valid choices"):
        build("text", BERT, pooling="max")


def test_freeze_keeps_eval_mode_and_no_grad() -> None:
    encoder = build("text", BERT, freeze=True)
    encoder.train()
    assert not encoder.model.training
    assert not any(p.requires_grad for p in encoder.parameters())
    out = encoder(torch.randint(1, 30522, (2, 5)))
    assert not out.requires_grad


def test_train_top_layers_unfreezes_only_the_top() -> None:
    encoder = build("text", BERT, freeze=True, train_top_layers=1)
    trainable = {n for n, p in encoder.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("model.encoder.layer.1.") for n in trainable)
    encoder.train()
    assert encoder.model.training  # partially trained: dropout on as in fine-tuning
    encoder(torch.randint(1, 30522, (2, 5))).sum().backward()
    for name, p in encoder.named_parameters():
        assert (p.grad is not None) == (name in trainable), name
    with pytest.raises(ValueError, match="freeze"):
        build("text", BERT, train_top_layers=1)


def test_train_top_layers_keeps_frozen_norm_statistics() -> None:
    """A ResNet whose last stage trains: a training step updates that stage's batch-norm
    statistics only; the frozen stem and first stage keep theirs."""
    encoder = build("image", RESNET, freeze=True, train_top_layers=1).train()
    before = {k: v.clone() for k, v in encoder.state_dict().items() if "running_mean" in k}
    encoder(torch.rand(4, 3, 32, 32)).sum().backward()
    moved = {k for k, v in encoder.state_dict().items() if k in before and not v.equal(before[k])}
    assert moved and all(".stages.1." in k for k in moved), moved


def test_needs_model_name_or_config() -> None:
    with pytest.raises(ValueError, match="model_name"):
        HFEncoder(modality="text")


def test_model_name_loads_offline_and_matches_minilm() -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
    x = torch.tensor(tok(["a lovely dress", "runs small"], padding=True)["input_ids"])
    spec = HFEncoder.input_spec({"model_name": minilm_path()})
    assert spec == {"tokenizer": minilm_path(), "max_length": 128}
    hf = HFEncoder(modality="text", model_name=minilm_path(), freeze=True)
    minilm = MiniLM(normalize=True)
    assert minilm.out_dim == hf.out_dim == 384
    with torch.no_grad():
        a, b = hf(x), minilm(x)
    assert torch.allclose(torch.nn.functional.normalize(a, dim=-1), b, atol=1e-6)
    assert torch.allclose(b.norm(dim=-1), torch.ones(2), atol=1e-5)
    # semantically closer sentences are closer (a sanity check that real weights loaded)
    with torch.no_grad():
        c = minilm(torch.tensor(tok(["a beautiful dress"], padding=True)["input_ids"]))
    assert (c @ b[0]) > (c @ b[1])


def test_minilm_cls_pooling_is_the_first_token() -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
    x = torch.tensor(tok(["a lovely dress", "runs small"], padding=True)["input_ids"])
    mean, cls = MiniLM(), MiniLM(pooling="cls")
    with torch.no_grad():
        hidden = mean.model(input_ids=x, attention_mask=(x != 0).long()).last_hidden_state
        assert torch.allclose(cls(x), hidden[:, 0], atol=1e-5)
        assert not torch.allclose(mean(x), cls(x))


def test_keep_layers_keeps_those_blocks_with_their_weights() -> None:
    """A student of the blocks ``keep_layers`` (DistilBERT-style): those blocks' weights, in
    that order, and nothing of the others; what is saved loads into the same config."""
    deep = {**BERT, "num_hidden_layers": 4}
    full = build("text", deep)
    student = build("text", deep, keep_layers=[3, 1])
    assert len(student.model.encoder.layer) == 2 and student.model.config.num_hidden_layers == 2
    for new, old in ((0, 3), (1, 1)):
        for (_, a), (_, b) in zip(
            student.model.encoder.layer[new].named_parameters(),
            full.model.encoder.layer[old].named_parameters(),
            strict=True,
        ):
            assert torch.equal(a, b)
    assert not any(".layer.2." in k for k in student.state_dict())
    again = build("text", deep, keep_layers=[3, 1])
    again.load_state_dict(student.state_dict())
    full.eval(), student.eval(), again.eval()
    x = torch.randint(1, 30522, (2, 6))
    with torch.no_grad():
        assert torch.equal(again(x), student(x)) and not torch.allclose(student(x), full(x))
    for bad in ([], [0, 4], [1, 1]):
        with pytest.raises(ValueError, match="keep_layers"):
            build("text", deep, keep_layers=bad)


def test_minilm_keep_layers_loads_every_other_block() -> None:
    student = MiniLM(keep_layers=[1, 3, 5])
    assert len(student.model.encoder.layer) == 3 and student.out_dim == 384
