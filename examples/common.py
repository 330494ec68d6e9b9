"""Helpers shared by the example scripts: method configs from presets and ``key=value`` overrides."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from panoptic_models import METHODS, from_dict, to_dict

__all__ = ["ConfigError", "apply_overrides", "build_method_config"]


class ConfigError(ValueError):
    """A bad configuration: unknown method, preset or key, or an ill-typed value (one line)."""


def apply_overrides(data: dict[str, Any], overrides: Sequence[str], free_form: Sequence[str] = ()) -> dict[str, Any]:
    """Set ``dotted.key=value`` pairs in a nested dict; values are parsed as YAML scalars or lists.

    A key must exist already, except inside the mappings named in ``free_form`` (dotted paths
    of mappings that take any key, such as ``backbone.options``).
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: the value is not valid YAML") from None
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: unknown key {key!r}")
            node = child
        if parts[-1] not in node and ".".join(parts[:-1]) not in free_form:
            raise ConfigError(f"override {item!r}: unknown key {key!r}")
        node[parts[-1]] = value
    return data


def build_method_config(method: str, preset: str | None, overrides: Sequence[str] = ()) -> Any:
    """The config of ``method`` (paper defaults, or a preset classmethod such as ``synthetic``) with overrides."""
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r} (known: {', '.join(METHODS)})")
    config_cls = METHODS[method][0]
    if preset is None:
        config = config_cls()
    else:
        factory = getattr(config_cls, preset, None)
        if not isinstance(getattr(config_cls, "__dict__", {}).get(preset), classmethod) or factory is None:
            presets = [n for n, v in vars(config_cls).items() if isinstance(v, classmethod) and n != "from_dict"]
            raise ConfigError(f"unknown preset {preset!r} of {method} (known: {', '.join(presets)})")
        config = factory()
    if not overrides:
        return config
    data = apply_overrides(to_dict(config), overrides, free_form=("backbone.options",))
    try:
        return from_dict(config_cls, data)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
