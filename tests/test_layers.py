import copy
import math
import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest
import torch
import torch.nn as nn

from rl_coordconv.layers import AddCoords, CoordConv2d, coordinate_channels


def naive_coordconv(layer: CoordConv2d, x: torch.Tensor) -> torch.Tensor:
    """The textbook form: concatenate coordinates to the batch, then one convolution."""
    reference = nn.Conv2d(
        layer.in_channels,
        layer.out_channels,
        layer.kernel_size,
        layer.stride,
        layer.padding,
        layer.dilation,
        bias=layer.bias is not None,
        padding_mode=layer.padding_mode,
        dtype=x.dtype,
        device=x.device,
    )
    reference.load_state_dict(layer.state_dict())
    return reference(AddCoords(layer.with_r)(x))


CASES = [
    # (batch, channels, height, width, out, kernel, stride, padding, dilation, with_r)
    (1, 1, 7, 7, 3, 3, 1, 0, 1, False),
    (5, 4, 84, 84, 32, 8, 4, 0, 1, False),
    (3, 2, 11, 17, 4, 3, 2, 1, 1, True),
    (2, 3, 17, 9, 5, (3, 5), (1, 2), (2, 1), 1, False),
    (4, 1, 20, 13, 2, 3, 1, 2, 2, True),
    (2, 6, 9, 30, 7, 1, 1, 0, 1, False),
    (2, 2, 15, 15, 3, 5, 3, 0, 3, True),
]


PATHS = ["broadcast_add", "concat", "auto"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES)
def test_coordconv_equals_concat_reference_with_gradients(case, dtype, path):
    batch, channels, height, width, out, kernel, stride, padding, dilation, with_r = case
    torch.manual_seed(0)
    layer = CoordConv2d(channels, out, kernel, stride, padding, dilation, with_r=with_r, dtype=dtype, path=path)
    x = torch.randn(batch, channels, height, width, dtype=dtype, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    reference = nn.Conv2d(layer.in_channels, out, kernel, stride, padding, dilation, dtype=dtype)
    reference.load_state_dict(layer.state_dict())

    y = layer(x)
    y_ref = reference(AddCoords(with_r)(x_ref))
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(y, y_ref, rtol=tolerance, atol=tolerance)

    upstream = torch.randn_like(y)
    (y * upstream).sum().backward()
    (y_ref * upstream).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(layer.weight.grad, reference.weight.grad, rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(layer.bias.grad, reference.bias.grad, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("padding, padding_mode", [("same", "zeros"), (1, "reflect"), (2, "replicate"), (1, "circular")])
def test_coordconv_padding_modes_match_reference(padding, padding_mode, path):
    torch.manual_seed(1)
    layer = CoordConv2d(3, 4, 3, padding=padding, padding_mode=padding_mode, with_r=True, dtype=torch.float64, path=path)
    x = torch.randn(2, 3, 10, 13, dtype=torch.float64)
    torch.testing.assert_close(layer(x), naive_coordconv(layer, x))


def test_auto_takes_the_broadcast_add_on_cpu_and_the_path_is_not_in_the_state_dict():
    torch.manual_seed(2)
    auto, concat = CoordConv2d(4, 8, 3), CoordConv2d(4, 8, 3, path="concat")
    concat.load_state_dict(auto.state_dict())
    assert auto.state_dict().keys() == concat.state_dict().keys() == {"weight", "bias"}
    x = torch.randn(2, 4, 12, 12)
    torch.testing.assert_close(auto(x), concat(x))
    assert auto.coordinate_patches.cached is not None and auto.coordinates.cached is None  # the broadcast-add
    assert concat.coordinates.cached is not None and concat.coordinate_patches.cached is None
    with pytest.raises(ValueError, match="path must be one of \\('auto', 'broadcast_add', 'concat'\\), got 'add'"):
        CoordConv2d(4, 8, 3, path="add")


def test_coordinate_channels_exact_values_on_non_square_image():
    coords = coordinate_channels(3, 5, with_r=True)[0]
    rows, columns, radius = coords
    assert coords.shape == (3, 3, 5)
    # Rows vary along the height only, columns along the width only.
    assert rows[:, 0].tolist() == [-1.0, 0.0, 1.0]
    assert torch.equal(rows, rows[:, :1].expand(3, 5))
    assert columns[0].tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert torch.equal(columns, columns[:1].expand(3, 5))
    # Corners: (row, column) = (-1, -1), (-1, 1), (1, -1), (1, 1); radius sqrt(2) there, 0 at the centre.
    for (r, c), expected in {(0, 0): (-1, -1), (0, 4): (-1, 1), (2, 0): (1, -1), (2, 4): (1, 1)}.items():
        assert (rows[r, c].item(), columns[r, c].item()) == expected
        assert radius[r, c].item() == pytest.approx(2**0.5)
    assert radius[1, 2].item() == 0.0


@pytest.mark.parametrize("height, width", [(84, 84), (7, 13), (20, 3), (1, 5)])
def test_float64_coordinates_match_the_formula_to_float64_rounding(height, width):
    def unit(index, size):
        return 0.0 if size == 1 else 2 * index / (size - 1) - 1

    rows = torch.tensor([[unit(i, height)] * width for i in range(height)], dtype=torch.float64)
    columns = torch.tensor([[unit(j, width) for j in range(width)]] * height, dtype=torch.float64)
    radius = torch.tensor(
        [[math.sqrt(unit(i, height) ** 2 + unit(j, width) ** 2) for j in range(width)] for i in range(height)],
        dtype=torch.float64,
    )
    coords = coordinate_channels(height, width, with_r=True, dtype=torch.float64)[0]
    torch.testing.assert_close(coords, torch.stack([rows, columns, radius]), rtol=0, atol=1e-15)
    x = torch.zeros(2, 1, height, width, dtype=torch.float64)
    torch.testing.assert_close(
        AddCoords(with_r=True)(x)[:, 1:], torch.stack([rows, columns, radius]).expand(2, 3, height, width), rtol=0, atol=1e-15
    )


def test_caches_follow_a_dtype_change_after_the_first_forward():
    torch.manual_seed(7)
    model = nn.Sequential(CoordConv2d(3, 4, 3, stride=2, with_r=True), nn.ReLU(), CoordConv2d(4, 2, 3))
    add_coords = AddCoords(with_r=True)
    x = torch.randn(2, 3, 13, 11)
    model(x), add_coords(x)
    with torch.no_grad():
        model(x)  # also fills the no-autograd reuse
    model.double()
    x = x.double()

    def reference(x):
        for layer in model:
            x = naive_coordconv(layer, x) if isinstance(layer, CoordConv2d) else layer(x)
        return x

    expected = reference(x)
    assert expected.dtype == torch.float64
    torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-12)
    assert add_coords(x).dtype == torch.float64
    torch.testing.assert_close(
        add_coords(x)[:, 3:], coordinate_channels(13, 11, True, dtype=torch.float64).expand(2, 3, 13, 11), rtol=0, atol=0
    )


def test_coordinate_channels_of_size_one_are_zero():
    assert torch.equal(coordinate_channels(1, 1), torch.zeros(1, 2, 1, 1))


@pytest.mark.parametrize("with_r", [False, True])
def test_add_coords_appends_channels_after_the_input(with_r):
    x = torch.randn(6, 3, 4, 7)
    out = AddCoords(with_r)(x)
    assert out.shape == (6, 3 + (3 if with_r else 2), 4, 7)
    assert torch.equal(out[:, :3], x)
    for sample in out:
        assert torch.equal(sample[3:], coordinate_channels(4, 7, with_r)[0])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_follow_the_float32_result(dtype):
    torch.manual_seed(2)
    layer32 = CoordConv2d(4, 8, 3, stride=2, with_r=True)
    layer = CoordConv2d(4, 8, 3, stride=2, with_r=True, dtype=dtype)
    layer.load_state_dict(layer32.state_dict())
    x = torch.randn(3, 4, 21, 16)
    y = layer(x.to(dtype))
    assert y.dtype == dtype
    assert layer.coordinate_patches.cached.dtype == dtype
    assert AddCoords()(x.to(dtype)).dtype == dtype
    torch.testing.assert_close(y.float(), layer32(x), rtol=0.05, atol=0.05)


def test_channels_last_modules_and_inputs_give_the_same_result():
    torch.manual_seed(5)
    layer = CoordConv2d(4, 8, 3, stride=2, with_r=True)
    x = torch.randn(2, 4, 15, 12)
    expected = layer(x)
    layer = layer.to(memory_format=torch.channels_last)
    torch.testing.assert_close(layer(x.to(memory_format=torch.channels_last)), expected)


def test_state_dict_has_the_naive_layout():
    layer = CoordConv2d(4, 32, 8, stride=4, with_r=True)
    assert layer.weight.shape == (32, 4 + 3, 8, 8)
    assert set(layer.state_dict()) == {"weight", "bias"}
    nn.Conv2d(7, 32, 8, stride=4).load_state_dict(layer.state_dict())  # strict: same keys and shapes


def test_coordinates_are_cached_between_calls_and_rebuilt_for_a_new_size():
    layer = CoordConv2d(1, 2, 3)
    layer(torch.randn(2, 1, 9, 9))
    first = layer.coordinate_patches.cached
    layer(torch.randn(5, 1, 9, 9))
    assert layer.coordinate_patches.cached is first
    layer(torch.randn(5, 1, 9, 12))
    assert layer.coordinate_patches.cached.shape == (2 * 3 * 3, 7 * 10)


def test_grouped_convolution_is_rejected_with_a_clear_error():
    with pytest.raises(ValueError, match="groups=1 only, got groups=2"):
        CoordConv2d(4, 4, 3, groups=2)


def test_wrong_input_is_rejected_with_a_clear_error():
    layer = CoordConv2d(4, 8, 3)
    with pytest.raises(ValueError, match=r"built for 4 input channels, got a batch of shape \(2, 3, 9, 9\)"):
        layer(torch.randn(2, 3, 9, 9))
    with pytest.raises(ValueError, match=r"expects a \(B, C, H, W\) batch"):
        layer(torch.randn(4, 9, 9))


def test_zero_coordinate_weights_make_a_plain_convolution():
    torch.manual_seed(3)
    layer = CoordConv2d(3, 5, 3, padding=1)
    with torch.no_grad():
        layer.weight[:, 3:] = 0
    plain = nn.Conv2d(3, 5, 3, padding=1)
    plain.weight.data.copy_(layer.weight[:, :3])
    plain.bias.data.copy_(layer.bias)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(layer(x), plain(x))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_matches_cpu_and_keeps_coordinates_on_the_device(dtype, no_tf32):
    torch.manual_seed(4)
    layer = CoordConv2d(4, 32, 8, stride=4, with_r=True)
    x = torch.randn(8, 4, 84, 84)
    expected = layer(x)
    tolerance = 1e-4 if dtype == torch.float32 else 0.05
    for path, cache in (("auto", "coordinates"), ("concat", "coordinates"), ("broadcast_add", "coordinate_patches")):
        layer_cuda = copy.deepcopy(layer).to("cuda", dtype)
        layer_cuda.path = path
        y = layer_cuda(x.to("cuda", dtype))
        assert getattr(layer_cuda, cache).cached.device.type == "cuda"  # auto: the concat on CUDA
        pointer = getattr(layer_cuda, cache).cached.data_ptr()
        layer_cuda(x.to("cuda", dtype))
        assert getattr(layer_cuda, cache).cached.data_ptr() == pointer
        torch.testing.assert_close(y.float().cpu(), expected, rtol=tolerance, atol=tolerance)


def test_without_autograd_the_reused_parts_follow_every_kind_of_weight_change():
    torch.manual_seed(6)
    layer = CoordConv2d(3, 4, 3, stride=2, with_r=True)
    x = torch.randn(2, 3, 11, 9)

    def check():
        with torch.no_grad():
            torch.testing.assert_close(layer(x), naive_coordconv(layer, x), rtol=1e-5, atol=1e-5)

    check()
    check()  # second call reuses the frozen parts
    # An optimizer step (in place on the parameter).
    layer(x).square().sum().backward()
    torch.optim.SGD(layer.parameters(), lr=0.5).step()
    check()
    # A write through .data, as SB3's polyak_update does: no version counter sees it.
    layer.weight.data[:, -1].add_(1.0)
    check()
    # load_state_dict, and a new input size.
    layer.load_state_dict(CoordConv2d(3, 4, 3, stride=2, with_r=True).state_dict())
    check()
    x = torch.randn(2, 3, 7, 14)
    check()


def test_inference_mode_first_call_does_not_break_training():
    layer = CoordConv2d(2, 3, 3)
    x = torch.randn(2, 2, 8, 8)
    with torch.inference_mode():
        layer(x)
    layer(x).sum().backward()
    assert layer.weight.grad is not None
    frozen = CoordConv2d(2, 3, 3).requires_grad_(False)
    with torch.inference_mode():
        frozen(x)
    x = x.requires_grad_()
    frozen(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.autograd.grad(naive_coordconv(frozen, x).sum(), x)[0])


def coordconv_model() -> nn.Sequential:
    return nn.Sequential(
        CoordConv2d(4, 8, 3, stride=2), nn.ReLU(), AddCoords(with_r=True), CoordConv2d(11, 2, 3, path="concat")
    )


def test_a_whole_model_saves_and_loads_with_its_caches_rebuilt(tmp_path):
    torch.manual_seed(7)
    model, x = coordconv_model(), torch.rand(3, 4, 12, 12)
    with torch.no_grad():
        before = model(x)  # fills every cache, and the parts reused without autograd
    torch.save(model, tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt", weights_only=False)
    assert loaded[0]._frozen is None and loaded[0].coordinate_patches.cached is None and loaded[2].coordinates.cached is None
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), before, rtol=0, atol=0)
    torch.testing.assert_close(loaded(x), before, rtol=1e-6, atol=1e-6)  # the autograd path
    copied = copy.deepcopy(model)
    with torch.no_grad():
        copied[0].weight.mul_(2)  # the copy's reused parts are its own: the original's stay right
        torch.testing.assert_close(model(x), before, rtol=0, atol=0)
        torch.testing.assert_close(copied[0](x), naive_coordconv(copied[0], x), rtol=1e-5, atol=1e-5)


def train_one_step(model: nn.Module) -> nn.Module:
    """In a worker process: one SGD step on a fixed batch, the model sent back (pickled both ways)."""
    torch.manual_seed(0)
    model(torch.rand(2, 4, 12, 12)).square().sum().backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    return model


def test_a_model_goes_to_a_process_pool_and_back():
    torch.manual_seed(8)
    model, x = coordconv_model(), torch.rand(2, 4, 12, 12)
    with torch.no_grad():
        model(x)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        trained = pool.submit(train_one_step, pickle.loads(pickle.dumps(model))).result()
    expected = train_one_step(model)
    with torch.no_grad():
        torch.testing.assert_close(trained(x), expected(x), rtol=1e-6, atol=1e-6)
