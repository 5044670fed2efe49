"""Tests for kerasrecipes.registry: a leaf the backbone modules register into."""

import pytest

import kerasrecipes as kr
from kerasrecipes import registry
from tiny_models import TINY


def test_registered_entries_come_from_their_own_modules():
    sources = {spec.name: spec.source for spec in registry.registered_backbones()}
    assert sources["resnet50"] == "keras.applications"
    assert "offline" in sources["efficientnet_lite0"]
    assert kr.get_backbone is registry.get_backbone and kr.BackboneSpec is registry.BackboneSpec


def test_register_and_resolve_by_prefix(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_RESOLVERS", dict(registry._RESOLVERS))
    registry.register_backbone(TINY)
    assert registry.get_backbone("Tiny-Test-Net") is TINY
    assert registry.registry_key("EfficientNet-Lite0") == "efficientnetlite0"
    registry.register_resolver("test:", lambda rest: TINY if rest == "tiny" else None,
                               hint="'test:tiny'")
    assert registry.get_backbone("test:tiny") is TINY
    with pytest.raises(ValueError, match=r"Unknown backbone 'nope'\..*tiny_test_net.*or "
                                         r"'hub:<keras-hub preset.*or 'test:tiny'\."):
        registry.get_backbone("nope")
    with pytest.raises(ValueError, match="backbone must be a name"):
        registry.get_backbone(3)
