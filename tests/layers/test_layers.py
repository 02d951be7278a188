import pytest
import torch

from polymodal.layers import (
    MLP,
    ConvBlock,
    ConvStack,
    LearnedPositionalEmbedding,
    ResidualBlock,
    SinusoidalPositionalEmbedding,
    masked_max,
    masked_mean,
)


def test_mlp_shapes_and_int_hidden():
    assert MLP(5, [8, 4], 3, dropout=0.1)(torch.randn(2, 5)).shape == (2, 3)
    mlp = MLP(5, 8, 3, activation="gelu")
    assert mlp(torch.randn(7, 5)).shape == (7, 3)
    assert len([m for m in mlp.net if isinstance(m, torch.nn.Linear)]) == 2
    assert MLP(5, [], 3)(torch.randn(2, 5)).shape == (2, 3)


def test_mlp_unknown_activation_lists_choices():
    with pytest.raises(ValueError, match="valid choices: relu"):
        MLP(5, 8, 3, activation="swishy")


def test_masked_mean_ignores_padding_and_empty_rows():
    x = torch.tensor([[[1.0], [3.0], [100.0]], [[float("nan")], [5.0], [7.0]]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    out = masked_mean(x, mask)
    assert torch.equal(out, torch.tensor([[2.0], [0.0]]))


def test_masked_max_ignores_padding_and_empty_rows():
    x = torch.tensor([[[-1.0], [-3.0], [100.0]], [[9.0], [5.0], [7.0]]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    assert torch.equal(masked_max(x, mask), torch.tensor([[-1.0], [0.0]]))


def test_masked_mean_gradient_is_finite_on_empty_rows():
    x = torch.randn(2, 3, 4, requires_grad=True)
    mask = torch.tensor([[True, False, False], [False, False, False]])
    masked_mean(x, mask).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad[1].abs().sum() == 0


def test_conv_blocks_shapes():
    x = torch.randn(2, 3, 9, 9)
    assert ConvBlock(3, 4)(x).shape == (2, 4, 5, 5)  # ceil-mode pooling
    assert ConvBlock(3, 4, pool=False, norm="none")(x).shape == (2, 4, 9, 9)
    assert ResidualBlock(3, 6, stride=2, norm="group")(x).shape == (2, 6, 5, 5)
    assert ResidualBlock(4, 4)(torch.randn(2, 4, 6, 6)).shape == (2, 4, 6, 6)
    stack = ConvStack(3, [4, 8, 8, 8, 8])
    assert stack(torch.randn(2, 3, 4, 4)).shape == (2, 8)  # deeper than the image is wide
    assert stack.out_dim == 8


@pytest.mark.parametrize(
    ("pool", "expected"), [("global", 8), ("width", 8 * 3), ("flatten", 8 * 3 * 2)]
)
def test_conv_stack_poolings_keep_the_positions_they_promise(pool, expected):
    stack = ConvStack(1, [4, 8], pool=pool, height=10, width=7)  # 10x7 -> 3x2 after two pools
    out = stack(torch.randn(2, 1, 10, 7))
    assert out.shape == (2, expected) and stack.out_dim == expected


def test_conv_stack_position_pooling_needs_the_size():
    with pytest.raises(ValueError, match="needs the input's height"):
        ConvStack(1, [4], pool="width")
    with pytest.raises(ValueError, match="one of global, width, flatten"):
        ConvStack(1, [4], pool="max")


def test_unknown_norm():
    with pytest.raises(ValueError, match="valid choices"):
        ConvBlock(3, 4, norm="layer")


def test_positional_embeddings():
    x = torch.zeros(2, 5, 6)
    sin = SinusoidalPositionalEmbedding(6, max_len=10)
    out = sin(x)
    assert out.shape == (2, 5, 6)
    assert torch.equal(out[0, 0], torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0]))
    assert not list(sin.state_dict())  # nothing to save: rebuilt from dim and max_len
    assert SinusoidalPositionalEmbedding(5, max_len=4)(torch.zeros(1, 4, 5)).shape == (1, 4, 5)
    learned = LearnedPositionalEmbedding(10, 6)
    out = learned(x)
    assert out.shape == (2, 5, 6)
    assert torch.equal(out[0], out[1])
    out.sum().backward()
    assert learned.embedding.weight.grad is not None
