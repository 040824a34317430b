"""Models: every supported family builds for grey and RGB input, the stem fold is exact, the head carries
the configured dropout, pretrained weights load from the local cache only, and freezing leaves the head."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from raytrain.errors import UserError
from raytrain.training.models import (
    ModelError,
    build_model,
    fold_to_one_channel,
    head_parameters,
    set_backbone_trainable,
)

NUM_CLASSES = 7


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty torch cache: torch.hub.get_dir() reads TORCH_HOME on every call."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # a set_dir() elsewhere would override TORCH_HOME
    return tmp_path


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small", "efficientnet_b0", "convnext_tiny"])
def test_builds_and_forwards_with_the_requested_dropout(arch, in_channels):
    model = build_model(arch, NUM_CLASSES, in_channels=in_channels, dropout=0.25).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, in_channels, 32, 32))
    assert logits.shape == (2, NUM_CLASSES)
    # model.dropout is the only dropout in the model: efficientnet's and mobilenet's own 0.2 is gone
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.25]


@pytest.mark.filterwarnings("ignore:The default weight initialization of GoogleNet:FutureWarning")
def test_aux_classifiers_are_dropped_so_train_mode_returns_logits():
    model = build_model("googlenet", NUM_CLASSES, in_channels=1).train()
    logits = model(torch.randn(2, 1, 64, 64))
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, NUM_CLASSES)


def test_fold_to_one_channel_sees_grey_as_its_rgb_copy():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, kernel_size=5, stride=2, padding=2, bias=True)
    folded = fold_to_one_channel(conv)
    grey = torch.randn(2, 1, 17, 17)
    assert folded.in_channels == 1 and folded.stride == conv.stride and folded.padding == conv.padding
    torch.testing.assert_close(folded(grey), conv(grey.expand(-1, 3, -1, -1)), rtol=1e-5, atol=1e-5)


def test_grey_model_equals_rgb_model_on_replicated_input():
    torch.manual_seed(0)
    rgb = build_model("resnet18", NUM_CLASSES, in_channels=3).eval()
    torch.manual_seed(0)  # same draws: the models differ only in the folded stem
    grey = build_model("resnet18", NUM_CLASSES, in_channels=1).eval()
    image = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(grey(image), rgb(image.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-5)


def test_pretrained_without_cached_file_names_path_and_fix(torch_home):
    expected = torch_home / "hub" / "checkpoints" / Path(torchvision.models.ResNet18_Weights.DEFAULT.url).name
    with pytest.raises(ModelError) as err:
        build_model("resnet18", NUM_CLASSES, pretrained=True)
    message = str(err.value)
    assert str(expected) in message
    assert "model.pretrained: false" in message
    assert torchvision.models.ResNet18_Weights.DEFAULT.url in message  # what to fetch
    assert not expected.exists()  # nothing was downloaded


def test_pretrained_loads_the_cached_file(torch_home):
    torch.manual_seed(123)
    reference = torchvision.models.resnet18().state_dict()
    # where torchvision looks: <torch hub dir>/checkpoints/<the URL's file name>
    path = torch_home / "hub" / "checkpoints" / Path(torchvision.models.ResNet18_Weights.DEFAULT.url).name
    path.parent.mkdir(parents=True)
    torch.save(reference, path)

    model = build_model("resnet18", NUM_CLASSES, in_channels=1, pretrained=True)
    state = model.state_dict()
    torch.testing.assert_close(state["layer4.1.conv2.weight"], reference["layer4.1.conv2.weight"], rtol=0, atol=0)
    torch.testing.assert_close(state["bn1.running_var"], reference["bn1.running_var"], rtol=0, atol=0)
    torch.testing.assert_close(state["conv1.weight"], reference["conv1.weight"].sum(dim=1, keepdim=True))
    assert state["fc.1.weight"].shape == (NUM_CLASSES, 512)


def test_unknown_arch_is_a_user_error_with_a_suggestion():
    with pytest.raises(ModelError, match="did you mean 'resnet18'") as err:
        build_model("resnet19", NUM_CLASSES)
    assert isinstance(err.value, UserError)  # the CLI turns it into exit code 2


def test_arch_without_linear_head_is_refused():
    with pytest.raises(ModelError, match="no Linear classifier head"):
        build_model("squeezenet1_1", NUM_CLASSES)


def test_frozen_backbone_trains_only_the_head():
    model = build_model("resnet18", NUM_CLASSES, in_channels=1)
    set_backbone_trainable(model, False)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc.1.weight", "fc.1.bias"}
    assert {id(p) for p in head_parameters(model)} == {id(model.fc[1].weight), id(model.fc[1].bias)}

    model(torch.randn(2, 1, 32, 32)).sum().backward()
    assert model.conv1.weight.grad is None and model.fc[1].weight.grad is not None

    set_backbone_trainable(model, True)
    assert all(p.requires_grad for p in model.parameters())
