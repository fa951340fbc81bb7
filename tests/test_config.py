"""Strict YAML -> dataclass configuration."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from gs4_slam import config
from gs4_slam.config import ConfigError


@dataclass
class Inner:
    max_iters: int = 10
    step_m: float = 0.01
    mode: Literal["fast", "accurate"] = "fast"


@dataclass
class Outer:
    name: str = "default"
    device: str = "cpu"
    sizes: tuple[int, ...] = (1, 2)
    inner: Inner = field(default_factory=Inner)
    optional_path: str | None = None


def test_defaults_and_overlay(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("name: base\ninner:\n  max_iters: 3\n  step_m: 1\n")
    (tmp_path / "sub").mkdir()
    child = tmp_path / "sub" / "child.yaml"
    child.write_text("inherit_from: ../base.yaml\ninner:\n  mode: accurate\nsizes: [4, 5, 6]\n")
    cfg = config.load(Outer, child, overrides={"device": "cuda"})
    assert cfg.name == "base"
    assert cfg.inner == Inner(max_iters=3, step_m=1.0, mode="accurate")
    assert isinstance(cfg.inner.step_m, float)
    assert cfg.sizes == (4, 5, 6)
    assert cfg.device == "cuda"
    assert cfg.optional_path is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("inner:\n  max_iter: 3\n", "unknown key(s) ['max_iter']"),
        ("inner:\n  max_iters: 2.5\n", "inner.max_iters: expected an integer"),
        ("inner:\n  mode: slow\n", "inner.mode: 'slow' is not one of"),
        ("name: 3\n", "name: expected a string"),
        ("- a\n- b\n", "top level must be a mapping"),
    ],
)
def test_errors_name_the_key_and_file(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        config.load(Outer, path)
    assert message in str(info.value)
    assert "bad.yaml" in str(info.value)


def test_missing_file_and_cycles(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        config.load(Outer, tmp_path / "nope.yaml")
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("inherit_from: b.yaml\n")
    b.write_text("inherit_from: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        config.load(Outer, a)


def test_flatten_roundtrip():
    data = config.to_dict(Outer())
    flat = config.flatten(data)
    assert flat["inner.max_iters"] == 10
    assert config.unflatten(flat) == data
