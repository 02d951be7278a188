"""Per-row explanations: attributions per modality kind, attention weights, files, errors."""

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from polymodal import Predictor
from polymodal.data.preprocess.text import TextPreprocessor
from polymodal.evaluation.explain import ExplainError, word_level
from polymodal.evaluation.importance import ImportanceError
from tests.evaluation.conftest import signal_table


def test_the_informative_token_gets_the_largest_attribution(signal_model):
    frame = signal_table(12, seed=3)
    found = signal_model.explain(frame, list(range(6)))
    for e in found:
        text = e["modalities"]["review"]
        assert text["kind"] == "tokens" and text["tokens"] == frame["review"][e["row"]].split()
        top = text["tokens"][int(np.argmax(np.abs(text["values"])))]
        assert top in ("great", "awful"), (top, text)
        assert max(e["occlusion"], key=e["occlusion"].get) == "review"
        # integrated gradients is complete: attributions add up to f(x) - f(baseline)
        assert text["convergence_delta"] < 0.05 * max(1.0, abs(text["total"]))


@pytest.mark.parametrize("method", ["integrated_gradients", "gradient_x_input"])
def test_every_modality_kind(five_table, concat_model, tmp_path, method):
    folder, frame = five_table
    pred = Predictor.load(concat_model)
    found = pred.explain(folder / "table.csv", [0, 4], output="flag", method=method, output_dir=tmp_path)  # fmt: skip
    first = found[0]
    assert (
        first["row"] == 0
        and first["output"] == "flag"
        and set(first["probabilities"]) == {"0", "1"}
    )
    mods = first["modalities"]
    assert mods["size"] == {"present": False}  # row 0 has no size: nothing to attribute
    assert mods["review"]["tokens"] == frame["review"][0].split()
    assert mods["photo"]["kind"] == "pixels" and mods["photo"]["shape"] == [16, 16]
    assert mods["voice"]["kind"] == "time_frequency" and mods["voice"]["shape"][0] == 16
    assert mods["numeric"]["features"] == ["age"] and len(mods["numeric"]["values"]) == 1
    assert found[1]["modalities"]["size"]["features"] == ["size"]
    assert found[1]["modalities"]["size"]["inputs"] == [frame["size"][4]]
    for r in (0, 4):
        saved = json.loads((tmp_path / f"row_{r}.json").read_text())
        assert saved["row"] == r and saved["method"] == method
        assert (tmp_path / f"row_{r}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_attention_weights_per_sample(five_table, attention_model):
    folder, _ = five_table
    found = Predictor.load(attention_model).explain(folder / "table.csv", [0, 1], method="attention")  # fmt: skip
    att = found[0]["attention"]
    assert att["tokens"] == ["[CLS]", "numeric", "photo", "review", "size", "voice"]
    assert att["cls_to_modality"]["size"] == 0.0  # missing in row 0: no attention to it
    layers = np.array(att["layers"])  # (layers, 1+M, 1+M), rows are distributions
    assert layers.shape == (1, 6, 6) and np.allclose(layers.sum(-1), 1.0, atol=1e-4)
    assert found[1]["attention"]["cls_to_modality"]["size"] > 0.0
    assert "kind" not in found[0]["modalities"]["photo"]  # attention only: no attributions


def test_attention_maps_follow_the_fusion(attention_model):
    """Recomputed weights come from the inputs each layer really sees."""
    fusion = Predictor.load(attention_model).artifact_.model.fusion
    feats = {n: torch.randn(3, fusion.proj.proj[n][0].in_features) for n in fusion.names}
    masks = {n: torch.tensor([True, False, True]) for n in fusion.names}
    maps = fusion.attention_maps(feats, masks)  # (B, layers, heads, 1+M, 1+M)
    assert maps.shape[:3] == (3, 1, fusion.encoder.layers[0].self_attn.num_heads)
    assert torch.all(maps[1, ..., 1:] == 0)  # row 1: every modality missing, only [CLS]
    layer = fusion.encoder.layers[0]
    seq, padding = fusion._sequence(feats, masks)
    h = layer.norm1(seq)
    _, ref = layer.self_attn(h, h, h, key_padding_mask=padding, average_attn_weights=False)
    assert torch.allclose(maps[:, 0], ref, atol=1e-6)


def test_bad_input_errors(five_table, concat_model, attention_model):
    folder, frame = five_table
    pred = Predictor.load(concat_model)
    table = folder / "table.csv"
    with pytest.raises(ExplainError, match=r"rows \[48, -1\] are out of range.*48 rows"):
        pred.explain(table, [0, 48, -1])
    with pytest.raises(ValueError, match=r"missing column\(s\) \['review'\]"):
        pred.explain(frame.drop(columns=["review"]), [0], base_dir=folder)
    with pytest.raises(ImportanceError, match=r"no output 'price'.*flag, label"):
        pred.explain(table, [0], output="price")
    with pytest.raises(ExplainError, match=r"needs a fusion with cross-modal attention.*Concat"):
        pred.explain(table, [0], method="attention")
    with pytest.raises(ExplainError, match="unknown explanation method 'shap'"):
        pred.explain(table, [0], method="shap")
    with pytest.raises(ExplainError, match=r"label 'fish' is not a class.*cat"):
        pred.explain(table, [0], label="fish")


class HashingText(nn.Module):
    """A text encoder without an embedding table: attributions cannot reach its ids."""

    out_dim = 16

    def forward(self, x):
        return nn.functional.one_hot(x % 16, 16).float().mean(1)


def test_methods_that_do_not_apply(five_table, concat_model):
    folder, _ = five_table
    pred = Predictor.load(concat_model)
    model = pred.artifact_.model
    original = model.encoders["review"]
    model.encoders["review"] = HashingText()
    try:
        with pytest.raises(
            ExplainError, match=r"input 'review'.*HashingText has none.*nn.Embedding"
        ):
            pred.explain(folder / "table.csv", [1])
    finally:
        model.encoders["review"] = original
    quantized = copy.deepcopy(pred)
    torch.ao.quantization.quantize_dynamic(quantized.artifact_.model, {nn.Linear}, inplace=True)
    with pytest.raises(ExplainError, match="int8-quantized"):
        quantized.explain(folder / "table.csv", [1])
    occlusion = quantized.explain(folder / "table.csv", [1], method="occlusion")[0]
    assert set(occlusion["occlusion"]) == set(model.inputs)
    assert occlusion["modalities"]["photo"] == {"present": True}  # no attributions


def test_word_level_sums_hashed_ngrams():
    pre = TextPreprocessor(tokenizer="ngram_hash", ngram_min=3, ngram_max=4, max_length=64)
    names = pre.tokens("Big red")
    assert [pre._hash(n) for n in names] == pre.encode(["Big red"])[0]
    values = [1.0 if n in ("w:big", "c:<bi", "c:<big") else 0.0 for n in names]
    values[names.index("b:big red")] = 2.0
    words, per_word = word_level(names, values, 3, 4)
    assert words == ["big", "red"] and per_word == pytest.approx([4.0, 1.0])
