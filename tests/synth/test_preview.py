"""Contact sheets of a dataset, as ``handvox synth --preview`` writes them."""

import numpy as np
import pytest
from PIL import Image

from handvox.camera import Camera
from handvox.cli.main import main
from handvox.io.synthetic import SyntheticDataset
from handvox.synth.toy import TOY_VERSION

NYU = Camera.preset("nyu")


@pytest.mark.slow
@pytest.mark.integration
def test_cli_synth_with_preview(tmp_path, capsys):
    out = tmp_path / "ds"
    args = ["synth", "--out", str(out), "--frames", "6", "--seed", "2", "--generator", "toy"]
    assert main(args + ["--chunk-size", "4", "--preview", "--quiet", "--shard", "1/1"]) == 0
    assert "wrote 6 frames in 2 chunks" in capsys.readouterr().out
    ds = SyntheticDataset(out, require_complete=True)
    assert (
        len(ds) == 6
        and ds.camera == NYU
        and ds.meta["generator"] == {"name": "toy", "version": TOY_VERSION}
    )
    sheet = np.asarray(Image.open(out / "preview.png"))
    assert sheet.shape == (512, 1024, 3)  # 4 tiles a row, 2 rows for 6 frames
    assert sheet[:256, :256].std() > 10 and not sheet[256:, 512:].any()  # tiles 7, 8 are empty
    assert main(args + ["--chunk-size", "4", "--quiet"]) == 0
    assert "0 frames in 0 chunks" in capsys.readouterr().out

    assert main(args + ["--shard", "3/2"]) == 2
    assert "shard 3/2" in capsys.readouterr().err
