"""Official state-dict layouts, built here, mapped onto our modules (no downloads)."""

import pytest
import torch
from torch import nn

from srstyle.cli import main
from srstyle.models import build_model
from srstyle.models.import_weights import WeightImportError, import_weights
from srstyle.train.sr import load_model_file


class OfficialEDSR(nn.Module):
    """The layout of the authors' EDSR-PyTorch (rgb_range 255): head.0, body.N.body.{0,2}, tail.0.K, tail.1."""

    def __init__(self, scale, n_resblocks=2, n_feats=8, res_scale=1.0):
        super().__init__()
        mean = torch.tensor([0.4488, 0.4371, 0.4040]) * 255
        self.sub_mean = nn.Conv2d(3, 3, 1)
        self.sub_mean.weight.data = torch.eye(3).view(3, 3, 1, 1)
        self.sub_mean.bias.data = -mean
        self.add_mean = nn.Conv2d(3, 3, 1)
        self.add_mean.weight.data = torch.eye(3).view(3, 3, 1, 1)
        self.add_mean.bias.data = mean
        self.head = nn.Sequential(nn.Conv2d(3, n_feats, 3, padding=1))

        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Sequential(nn.Conv2d(n_feats, n_feats, 3, padding=1), nn.ReLU(True), nn.Conv2d(n_feats, n_feats, 3, padding=1))

            def forward(self, x):
                return x + self.body(x) * res_scale

        self.body = nn.Sequential(*[Block() for _ in range(n_resblocks)], nn.Conv2d(n_feats, n_feats, 3, padding=1))
        ups = []
        for _ in range({2: 1, 3: 1, 4: 2}[scale]):
            s = 3 if scale == 3 else 2
            ups += [nn.Conv2d(n_feats, s * s * n_feats, 3, padding=1), nn.PixelShuffle(s)]
        self.tail = nn.Sequential(nn.Sequential(*ups), nn.Conv2d(n_feats, 3, 3, padding=1))

    def forward(self, x):
        x = self.head(self.sub_mean(x))
        return self.add_mean(self.tail(self.body(x) + x))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_edsr_official_layout_gives_the_same_function(scale, tmp_path):
    torch.manual_seed(scale)
    official = OfficialEDSR(scale).eval()
    for p in official.parameters():  # non-trivial biases so the 1/255 rescaling is exercised
        p.data.normal_(0, 0.05)
    with torch.no_grad():
        official.sub_mean.bias.data = -torch.tensor([0.4488, 0.4371, 0.4040]) * 255
        official.add_mean.bias.data = torch.tensor([0.4488, 0.4371, 0.4040]) * 255
        official.sub_mean.weight.data = torch.eye(3).view(3, 3, 1, 1)
        official.add_mean.weight.data = torch.eye(3).view(3, 3, 1, 1)
    torch.save({"state_dict": {f"module.{k}": v for k, v in official.state_dict().items()}}, tmp_path / "edsr.pt")
    ours = import_weights("edsr", scale, tmp_path / "edsr.pt", blocks=2, channels=8)
    x = torch.rand(1, 3, 11, 13)
    with torch.no_grad():
        expected = official(x * 255) / 255
        got = ours(x)
    assert torch.allclose(got, expected, atol=1e-5)


def test_edsr_wrong_scale_names_the_key(tmp_path):
    torch.save(OfficialEDSR(4).state_dict(), tmp_path / "x4.pt")
    with pytest.raises(WeightImportError, match="tail.0.2.weight"):
        import_weights("edsr", 2, tmp_path / "x4.pt", blocks=2, channels=8)


def test_espcn_public_layout_and_shape_refusal(tmp_path):
    layout = {
        "first_part.0.weight": torch.randn(64, 1, 5, 5), "first_part.0.bias": torch.randn(64),
        "first_part.2.weight": torch.randn(32, 64, 3, 3), "first_part.2.bias": torch.randn(32),
        "last_part.0.weight": torch.randn(9, 32, 3, 3), "last_part.0.bias": torch.randn(9),
    }
    torch.save(layout, tmp_path / "espcn.pth")
    model = import_weights("espcn", 3, tmp_path / "espcn.pth")
    assert torch.equal(model.body[4].weight, layout["last_part.0.weight"])
    with pytest.raises(WeightImportError, match="'last_part.0.weight' has shape \\(9, 32, 3, 3\\) but 'body.4.weight' needs \\(16, 32, 3, 3\\)"):
        import_weights("espcn", 4, tmp_path / "espcn.pth")
    # pytorch/examples' 4-conv variant is not the paper's ESPCN: refused, naming the first extra tensor.
    layout4 = {**layout, "extra.weight": torch.randn(9, 9, 3, 3)}
    torch.save(layout4, tmp_path / "four.pth")
    with pytest.raises(WeightImportError, match="extra.weight"):
        import_weights("espcn", 3, tmp_path / "four.pth")


def test_srresnet_ordered_port_round_trip(tmp_path):
    source = build_model("srresnet", 4, blocks=2, channels=8)
    renamed = {f"generator.layer{i}.{k.rsplit('.', 1)[-1]}": v for i, (k, v) in enumerate(source.state_dict().items())}
    torch.save(renamed, tmp_path / "srresnet.pth")
    model = import_weights("srresnet", 4, tmp_path / "srresnet.pth", blocks=2, channels=8)
    x = torch.rand(1, 3, 6, 7)
    with torch.no_grad():
        assert torch.equal(model(x), source.eval()(x))


def test_cli_import_weights_writes_a_model_file(tmp_path):
    torch.save(OfficialEDSR(2).state_dict(), tmp_path / "edsr.pt")
    assert main(["import-weights", "edsr", str(tmp_path / "edsr.pt"), "--scale", "2", "--out", str(tmp_path / "m.pt"),
                 "--kwargs", '{"blocks": 2, "channels": 8}']) == 0
    assert load_model_file(tmp_path / "m.pt").scale == 2
    (tmp_path / "code.pt").write_bytes(b"not a torch file")
    with pytest.raises(SystemExit, match="code.pt"):
        main(["import-weights", "edsr", str(tmp_path / "code.pt"), "--scale", "2", "--out", str(tmp_path / "n.pt")])
