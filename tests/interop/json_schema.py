"""A small JSON Schema validator: the subset docs/cli-schema.json uses.

Keywords: ``type`` (one or a list), ``enum``, ``const``, ``pattern``,
``minimum``, ``properties``, ``required``, ``additionalProperties`` (false
or a schema), ``propertyNames``, ``items``, ``allOf``, ``anyOf``, ``not``
and ``$ref`` to ``#/$defs/NAME``. Any other keyword is an error, so the
schema cannot silently use something this does not check.
"""

from __future__ import annotations

import re
from typing import Any

_TYPES: dict[str, Any] = {
    "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
}
_KNOWN = {"$schema", "$id", "$defs", "title", "description", "type", "enum", "const", "pattern", "minimum",
          "properties", "required", "additionalProperties", "propertyNames", "items", "allOf", "anyOf", "not"}


def _is_type(v: Any, t: str) -> bool:
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "number":
        return isinstance(v, int | float) and not isinstance(v, bool)
    return isinstance(v, _TYPES[t])


def errors(value: Any, schema: dict[str, Any], root: dict[str, Any], path: str = "$") -> list[str]:
    """Every way ``value`` breaks ``schema`` (empty: valid), each naming the JSON path."""
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/$defs/"):
            return [f"{path}: unsupported $ref {ref}"]
        return errors(value, root["$defs"][ref.removeprefix("#/$defs/")], root, path)
    unknown = set(schema) - _KNOWN
    if unknown:
        return [f"{path}: schema keyword(s) not supported here: {sorted(unknown)}"]
    out: list[str] = []
    t = schema.get("type")
    if t is not None:
        types = t if isinstance(t, list) else [t]
        if not any(_is_type(value, x) for x in types):
            return [f"{path}: {value!r} is not of type {t}"]
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        out.append(f"{path}: {value!r} is not {schema['const']!r}")
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        out.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if "minimum" in schema and _is_type(value, "number") and value < schema["minimum"]:
        out.append(f"{path}: {value} is below {schema['minimum']}")
    for sub in schema.get("allOf", []):
        out += errors(value, sub, root, path)
    if "anyOf" in schema and all(errors(value, s, root, path) for s in schema["anyOf"]):
        out.append(f"{path}: {value!r} matches none of anyOf")
    if "not" in schema and not errors(value, schema["not"], root, path):
        out.append(f"{path}: {value!r} matches a forbidden schema")
    if isinstance(value, dict):
        for k in schema.get("required", []):
            if k not in value:
                out.append(f"{path}: missing key {k!r}")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for k, v in value.items():
            if "propertyNames" in schema:
                out += [f"{path}: key {k!r}: {e.split(': ', 1)[1]}"
                        for e in errors(k, schema["propertyNames"], root, path)]
            if k in props:
                out += errors(v, props[k], root, f"{path}.{k}")
            elif extra is False:
                out.append(f"{path}: unexpected key {k!r}")
            elif isinstance(extra, dict):
                out += errors(v, extra, root, f"{path}.{k}")
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            out += errors(v, schema["items"], root, f"{path}[{i}]")
    return out


def check(value: Any, root: dict[str, Any], definition: str) -> None:
    """AssertionError listing the problems when ``value`` is not a valid ``definition``."""
    problems = errors(value, {"$ref": f"#/$defs/{definition}"}, root)
    assert not problems, f"{definition}: " + "; ".join(problems[:10])
