"""Render a policy document out of the CloudFormation template, as CloudFormation would.

Only the intrinsic functions the rendered parts use are understood (Ref, GetAtt, Sub, If). Any
other one raises, so a template change this renderer cannot follow fails loudly instead of
handing the emulator a policy that is not the one deployed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

RESOURCES_TEMPLATE = Path(__file__).parents[2] / "deploy/cloudformation/pipelined-resources.yaml"


@dataclass(frozen=True)
class Intrinsic:
    """A short-form intrinsic function such as ``!Sub "..."``, still unresolved."""

    function: str
    argument: Any


class _TemplateLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags kept as ``Intrinsic`` values."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Intrinsic:
    argument: Any
    if isinstance(node, yaml.ScalarNode):
        argument = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        argument = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        argument = loader.construct_mapping(node, deep=True)
    return Intrinsic(suffix, argument)


_TemplateLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = RESOURCES_TEMPLATE) -> dict[str, Any]:
    with path.open(encoding="utf-8") as stream:
        template = yaml.load(stream, Loader=_TemplateLoader)
    assert isinstance(template, dict)
    return template


class _NoValue:
    """``AWS::NoValue``: the property or list item disappears."""


NO_VALUE = _NoValue()
_SUBSTITUTION = re.compile(r"\$\{([^}!]+)\}")


@dataclass(frozen=True)
class Resolver:
    """What the stack would resolve: ``values`` by logical name, ``Name.Attribute`` or pseudo
    parameter (``AWS::Region``), and the template's conditions as booleans."""

    values: Mapping[str, str]
    conditions: Mapping[str, bool]

    def resolve(self, node: Any) -> Any:
        if isinstance(node, Intrinsic):
            return self._call(node)
        if isinstance(node, dict):
            resolved = {key: self.resolve(value) for key, value in node.items()}
            return {key: value for key, value in resolved.items() if value is not NO_VALUE}
        if isinstance(node, list):
            return [item for item in map(self.resolve, node) if item is not NO_VALUE]
        return node

    def _call(self, node: Intrinsic) -> Any:
        match node.function, node.argument:
            case "Ref", "AWS::NoValue":
                return NO_VALUE
            case (("Ref" | "GetAtt"), str(name)):
                return self._value(name)
            case "Sub", str(text):
                return _SUBSTITUTION.sub(lambda match: self._value(match[1]), text)
            case "If", [str(condition), when_true, when_false]:
                return self.resolve(when_true if self.conditions[condition] else when_false)
        raise ValueError(f"the renderer does not handle !{node.function} {node.argument!r}")

    def _value(self, name: str) -> str:
        if name not in self.values:
            raise KeyError(f"no value given for {name!r}")
        return self.values[name]


def policy_document(resource: str, resolver: Resolver, template: dict[str, Any]) -> dict[str, Any]:
    """The resolved ``PolicyDocument`` of the managed policy ``resource``."""
    document = template["Resources"][resource]["Properties"]["PolicyDocument"]
    resolved = resolver.resolve(document)
    assert isinstance(resolved, dict)
    return resolved
