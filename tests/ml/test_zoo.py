"""Model construction and pretrained-weight resolution, all without the network."""

from __future__ import annotations

import hashlib
import io
import urllib.error
from pathlib import Path

import pytest
import torch

from densestudio.ml import zoo
from densestudio.ml.events import WeightsDownload


class FakeResponse:
    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)
        self.headers = {"Content-Length": str(len(data))}
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        return self._buf.read(n)

    def close(self) -> None:
        self.closed = True


def _spec_for(data: bytes, name: str = "densenet121") -> zoo.WeightSpec:
    prefix = hashlib.sha256(data).hexdigest()[:8]
    return zoo.WeightSpec(name, f"https://example.invalid/models/{name}-{prefix}.pth")


def test_weight_spec_matches_torchvision() -> None:
    spec = zoo.weight_spec("densenet121")
    assert spec.filename == "densenet121-a639ec97.pth" and spec.sha256_prefix == "a639ec97"
    with pytest.raises(zoo.WeightsError, match="from scratch"):
        zoo.weight_spec("densenet_bc_1m")


def test_user_file_wins(tmp_path: Path) -> None:
    f = tmp_path / "mine.pth"
    f.write_bytes(b"x")
    opener_calls = []
    got = zoo.resolve_weights("densenet121", f, hub_dir=tmp_path / "hub",
                              opener=lambda url: opener_calls.append(url))
    assert got == f and not opener_calls
    with pytest.raises(zoo.WeightsUnavailable, match="not found"):
        zoo.resolve_weights("densenet121", tmp_path / "missing.pth")


def test_hub_cache_is_used_without_download(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "densenet121-a639ec97.pth").write_bytes(b"cached")

    def opener(url: str) -> None:
        raise AssertionError("must not download")

    got = zoo.resolve_weights("densenet121", hub_dir=hub, opener=opener)
    assert got == hub / "densenet121-a639ec97.pth"


def test_download_verifies_checksum_and_reports_progress(tmp_path: Path) -> None:
    data = b"weights" * 50_000
    spec = _spec_for(data)
    events: list[WeightsDownload] = []
    response = FakeResponse(data)
    got = zoo.resolve_weights(
        "densenet121", hub_dir=tmp_path, spec=spec, opener=lambda url: response,
        on_progress=events.append,
    )  # fmt: skip
    assert got.read_bytes() == data and got.name == spec.filename
    assert events[-1].done == events[-1].total == len(data) and response.closed
    assert [p.name for p in tmp_path.iterdir()] == [spec.filename]  # no temp files left


def test_corrupt_download_is_rejected_and_removed(tmp_path: Path) -> None:
    spec = _spec_for(b"the real file")
    with pytest.raises(zoo.WeightsError, match="checksum"):
        zoo.resolve_weights("densenet121", hub_dir=tmp_path, spec=spec,
                            opener=lambda url: FakeResponse(b"truncated"))
    assert list(tmp_path.iterdir()) == []


def test_offline_message_names_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(zoo.WeightsUnavailable) as info:
        zoo.resolve_weights("densenet169", hub_dir=tmp_path, allow_download=False)
    msg = str(info.value)
    assert zoo.weight_spec("densenet169").filename in msg and str(tmp_path) in msg

    def no_network(url: str) -> None:
        raise urllib.error.URLError("Temporary failure in name resolution")

    with pytest.raises(zoo.WeightsUnavailable, match="Download failed"):
        zoo.resolve_weights("densenet169", hub_dir=tmp_path, opener=no_network)


def test_old_style_torchvision_keys_load(tmp_path: Path) -> None:
    """torchvision's files use 'norm.1'-style keys; they load into densenet121's features."""
    torch.manual_seed(0)
    reference = zoo.build_model("densenet121", 1000, 3).backbone.state_dict()
    old = {}
    for key, value in reference.items():
        for part in ("norm1", "norm2", "conv1", "conv2", "relu1", "relu2"):
            key = key.replace(f".{part}.", f".{part[:-1]}.{part[-1]}.")
        old[key] = value
    assert any(".norm.1." in k for k in old)
    path = tmp_path / "densenet121-fake.pth"
    torch.save(old, path)
    model = zoo.build_model("densenet121", 4, weights_file=path)
    got = model.backbone.state_dict()
    assert torch.equal(got["features.denseblock1.denselayer1.norm1.weight"],
                       reference["features.denseblock1.denselayer1.norm1.weight"])
    assert model.backbone.classifier.out_features == 4
    # Gray input is replicated to the 3 channels of a pretrained backbone.
    model.eval()
    with torch.no_grad():
        gray = torch.rand(1, 1, 32, 32)
        assert torch.allclose(model(gray), model(gray.expand(-1, 3, -1, -1)))


def test_wrong_weights_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(zoo.WeightsError, match="is not a PyTorch weights file"):
        zoo.build_model("densenet121", 3, weights_file=path)
    small = zoo.build_model("densenet_bc_tiny", 1000, 3).backbone.state_dict()
    torch.save(small, tmp_path / "tiny.pth")
    with pytest.raises(zoo.WeightsError, match="does not fit densenet121"):
        zoo.build_model("densenet121", 3, weights_file=tmp_path / "tiny.pth")


def test_compact_models() -> None:
    m = zoo.build_model("densenet_bc_1m", 6, 1)
    assert 0.9e6 < zoo.count_parameters(m) < 1.1e6
    assert m.backbone.features.conv0.in_channels == 1
    m.eval()
    assert m(torch.rand(2, 1, 32, 32)).shape == (2, 6)
    tiny = zoo.build_model("densenet_bc_tiny", 3, 3)
    assert zoo.count_parameters(tiny) < 0.2e6


@pytest.mark.parametrize("memory_efficient", [False, True])
def test_chained_dense_blocks_match_torchvision(memory_efficient: bool) -> None:
    """Same state dict, outputs, batch-norm statistics and gradients as torchvision's own
    dense blocks, so pretrained weights load unchanged and only the speed differs."""
    from torchvision.models import DenseNet

    torch.manual_seed(0)
    ours = zoo.build_model("densenet_bc_tiny", 4, 3, mean=(0.0,) * 3, std=(1.0,) * 3,
                           memory_efficient=memory_efficient)  # fmt: skip
    ref = DenseNet(12, (4, 4, 4, 4), 24, num_classes=4, memory_efficient=memory_efficient)
    assert any(isinstance(m, zoo.ChainedDenseBlock) for m in ours.modules())
    assert list(ours.backbone.state_dict()) == list(ref.state_dict())
    ref.load_state_dict(ours.backbone.state_dict())
    x = torch.rand(3, 3, 48, 48)
    for training in (True, False):
        ours.train(training)
        ref.train(training)
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        a, b = ours(x1), ref(x2)
        torch.testing.assert_close(a, b)
        (a * torch.arange(4.0)).sum().backward()
        (b * torch.arange(4.0)).sum().backward()
        torch.testing.assert_close(x1.grad, x2.grad)
    for (name, p), q in zip(ours.backbone.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)
    for (name, buf), ref_buf in zip(ours.backbone.named_buffers(), ref.buffers(), strict=True):
        torch.testing.assert_close(buf, ref_buf, msg=name)


def test_eight_view_tta_averages_all_symmetries_of_the_square() -> None:
    torch.manual_seed(0)
    net = zoo.build_model("densenet_bc_tiny", 3, 1).eval()
    x = torch.rand(2, 1, 40, 40)
    views = []
    for t in (x, x.transpose(2, 3)):
        views += [t, t.flip(3), t.flip(2), t.flip([2, 3])]
    with torch.no_grad():
        expected = torch.stack([torch.softmax(net(v), 1) for v in views]).mean(0)
        tta = zoo.ProbabilityModel(net, 8)
        torch.testing.assert_close(tta(x), expected)
        torch.testing.assert_close(torch.jit.script(tta)(x), expected)
        # A non-square input cannot be transposed into the same shape: the four flips.
        wide = torch.rand(2, 1, 40, 48)
        four = zoo.ProbabilityModel(net, 4)(wide)
        torch.testing.assert_close(tta(wide), four)
