"""YAML with line numbers: the file as plain values, the line of every key path, and
``${VAR}`` / ``${VAR:-default}`` replaced by environment variables in string values."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from cdc.config.problems import Loc, Problem, dotted


class Reader:
    """Turns a YAML document into plain values, remembering the line of every key path."""

    _REF = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
    _INNER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)

    def __init__(self, text: str, file: str, env: Mapping[str, str]) -> None:
        self.file = file
        self.env = env
        self.lines: dict[Loc, int] = {(): 1}
        # values changed by interpolation: their text as written (errors show it, not the value)
        self.written: dict[Loc, str] = {}
        self.problems: list[Problem] = []
        self._loader = yaml.SafeLoader(text)

    def read(self) -> Any:
        try:
            node = self._loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else 1
            self.problems.append(Problem(self.file, line, "", f"YAML syntax error: {exc.problem}"))
            return None
        except yaml.YAMLError as exc:  # pragma: no cover - defensive
            self.problems.append(Problem(self.file, 1, "", f"YAML error: {exc}"))
            return None
        finally:
            self._loader.dispose()
        if node is None:
            return None
        return self._value(node, ())

    def _problem(self, node: yaml.Node, loc: Loc, message: str) -> None:
        self.problems.append(Problem(self.file, node.start_mark.line + 1, dotted(loc), message))

    def _value(self, node: yaml.Node, loc: Loc) -> Any:
        if isinstance(node, yaml.MappingNode):
            try:
                self._loader.flatten_mapping(node)
            except yaml.MarkedYAMLError as exc:
                self._problem(node, loc, f"YAML error: {exc.problem}")
                return {}
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self._scalar(key_node, loc)
                if not isinstance(key, str):
                    self._problem(key_node, loc, f"keys must be strings (got {key!r})")
                    continue
                child = (*loc, key)
                if key in result:
                    self._problem(key_node, child, "duplicate key")
                    continue
                self.lines[child] = key_node.start_mark.line + 1
                result[key] = self._value(value_node, child)
            return result
        if isinstance(node, yaml.SequenceNode):
            items: list[Any] = []
            for index, item in enumerate(node.value):
                child = (*loc, index)
                self.lines[child] = item.start_mark.line + 1
                items.append(self._value(item, child))
            return items
        value = self._scalar(node, loc)
        if isinstance(value, str):
            return self._interpolate(value, node, loc)
        return value

    def _scalar(self, node: yaml.Node, loc: Loc) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self._problem(node, loc, "keys must be strings")
            return None
        try:
            return self._loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            self._problem(node, loc, f"YAML error: {exc.problem}")
            return None

    def _interpolate(self, value: str, node: yaml.Node, loc: Loc) -> str:
        if "$" not in value:
            return value

        def replace(match: re.Match[str]) -> str:
            text = match.group(0)
            if text == "$${":
                return "${"
            inner = match.group(1)
            if inner is None:
                self._problem(node, loc, "unclosed '${' (write '$${' for a literal '${')")
                return text
            ref = self._INNER.fullmatch(inner)
            if ref is None:
                self._problem(
                    node,
                    loc,
                    f"malformed reference '${{{inner}}}': use ${{NAME}} or ${{NAME:-default}}",
                )
                return text
            name, default = ref.group(1), ref.group(2)
            current = self.env.get(name)
            if current:
                return current
            if default is not None:
                return default
            if current is not None:  # set but empty, no default: empty is what was asked for
                return current
            self._problem(
                node,
                loc,
                f"environment variable {name} is not set "
                f"(set it, or give a default: ${{{name}:-default}})",
            )
            return text

        result = self._REF.sub(replace, value)
        if result != value:
            self.written[loc] = value
        return result
