import numpy as np
import torch

from srstyle.evaluate.compare import all_models_comparison
from srstyle.inference import _torch_model
from srstyle.models import build_model
from tests.helpers import photo


def test_all_models_side_by_side_one_row_per_scale():
    torch.manual_seed(0)
    models = {
        "espcn_x3": _torch_model(build_model("espcn", 3, channels=[4, 4]), "a"),
        "fsrcnn_x3": _torch_model(build_model("fsrcnn", 3, d=4, s=4, m=1), "b"),
        "edsr_x2": _torch_model(build_model("edsr", 2, blocks=1, channels=4), "c"),
    }
    picture = all_models_comparison(models, photo(100, 130, seed=0), crop=48)
    # x2 row: LR, bicubic, edsr, HR = 4 panels; x3 row: LR, bicubic, 2 models, HR = 5 panels (48 px + 4 px gaps).
    assert picture.dtype == np.uint8 and picture.shape[1] == 5 * 48 + 4 * 4
    assert picture.shape[0] == 2 * (48 + 16 + 4)
