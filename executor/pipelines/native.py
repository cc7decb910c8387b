"""The native pipeline format: ``*.pipeline.yaml``, the :class:`~.spec.Pipeline` model written as YAML."""

from __future__ import annotations

import yaml

from .spec import Pipeline, Problem, pipeline_from_data, refuse

MAX_PIPELINE_CHARS = 1_000_000
MAX_ALIASES = 100  # YAML aliases expand when validated: a few nested ones make a "billion laughs"


class _Loader(yaml.SafeLoader):
    """``safe_load``'s loader that also refuses a key given twice (YAML keeps the last one, and a
    step written twice would vanish without a word) and documents full of aliases."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise yaml.composer.ComposerError(None, None, f"more than {MAX_ALIASES} aliases (*name)",
                                                  self.peek_event().start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: the base class says so
                    break
                if duplicate:
                    raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice",
                                                            key_node.start_mark)
        return super().construct_mapping(node, deep)


def read_native(text: str, *, source: str) -> Pipeline:
    """The pipeline written in ``text`` (YAML, read with ``safe_load``: tags that build Python
    objects are refused). :class:`~loopml.errors.InvalidInput` naming ``source`` and the line of a
    syntax error, or listing every structural problem (unknown keys, bad values) by step and field.
    """
    if len(text) > MAX_PIPELINE_CHARS:
        refuse([Problem(source, "", f"the file has {len(text)} characters, more than {MAX_PIPELINE_CHARS}")])
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        refuse([Problem(source, "", f"{where}not valid YAML: {exc.problem or exc.context}")])
    except yaml.YAMLError as exc:
        refuse([Problem(source, "", f"not valid YAML: {exc}")])
    return pipeline_from_data(data, source=source)
