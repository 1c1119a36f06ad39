"""Manifests out as YAML that lmspec's own YAML 1.2 parser reads back to the same data.

Shared by ``lmspec render`` and the cluster exports, below both of them.
"""

from __future__ import annotations

from typing import Any

import yaml

from .parse import resolve_plain


class _Dumper(yaml.SafeDumper):
    """A YAML emitter whose output reads back identically under YAML 1.2 (lmspec's parser)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # PyYAML decides quoting with YAML 1.1 rules, under which `1e-4` is a string and may go
    # unquoted; under 1.2 it is a number. Quote every string that 1.2 would read as non-string.
    resolved = resolve_plain(value)
    if not isinstance(resolved, str) or resolved != value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return dumper.represent_str(value)


_Dumper.add_representer(str, _represent_str)


def to_yaml(data: dict[str, Any]) -> str:
    """One manifest as block-style YAML, keys in the order given."""
    text: str = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                          default_flow_style=False, width=100)
    return text
