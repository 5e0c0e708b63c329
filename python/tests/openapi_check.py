"""Holds the SDK's routes and result types to an OpenAPI document."""

import dataclasses
import re

from dspool import _routes
from dspool.types import MODELS


def _resolve(doc, node):
    while isinstance(node, dict) and "$ref" in node:
        parts = node["$ref"].lstrip("#/").split("/")
        node = doc
        for p in parts:
            node = node[p]
    return node


def _ref(schema):
    return schema.get("$ref", "").rsplit("/", 1)[-1]


def _properties(doc, schema):
    schema = _resolve(doc, schema)
    props = dict(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        props.update(_properties(doc, part))
    return props


def problems(doc):
    """Every way the SDK and doc disagree, as sentences; [] when none."""
    out = []
    paths, schemas = doc["paths"], doc["components"]["schemas"]
    for name, r in sorted(_routes.ROUTES.items()):
        item = paths.get(r.path)
        op = (item or {}).get(r.method.lower())
        if op is None:
            out.append("%s: the document has no %s %s" % (name, r.method, r.path))
            continue
        params = [_resolve(doc, p) for p in item.get("parameters", []) + op.get("parameters", [])]
        for where, wanted in (("query", set(r.query)), ("path", set(re.findall(r"{(\w+)}", r.path)))):
            have = {p["name"] for p in params if p["in"] == where}
            for missing in sorted(wanted - have):
                out.append("%s: %s %s has no %s parameter %r" % (name, r.method, r.path, where, missing))
        if r.body:
            schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            fields = _routes.JOB_SPEC_FIELDS if r.body == "JobSpec" else r.body
            if r.body == "JobSpec" and _ref(schema) != "JobSpec":
                out.append("%s: its body is not the schema JobSpec" % name)
            props = _properties(doc, schema)
            for f in fields:
                if f not in props:
                    out.append("%s: %s %s's body has no field %r" % (name, r.method, r.path, f))
        if r.answer:
            ok = [c for c, resp in op.get("responses", {}).items() if c.startswith("2")]
            schemas_ok = [_resolve(doc, op["responses"][c]).get("content", {}).get("application/json", {}).get("schema", {})
                          for c in ok]
            key, _, model = r.answer.rpartition(":")
            for s in schemas_ok or [{}]:
                if key:
                    s = _properties(doc, s).get(key, {})
                if model.endswith("[]"):
                    s = s.get("items", {}) if s.get("type") == "array" else {}
                if _ref(s) != model.rstrip("[]"):
                    out.append("%s: %s %s answers %s, not %s" % (name, r.method, r.path, s or "nothing", r.answer))
    for model in MODELS:
        if model.SCHEMA not in schemas:
            out.append("%s: the document has no schema %s" % (model.__name__, model.SCHEMA))
            continue
        props = _properties(doc, schemas[model.SCHEMA])
        for f in dataclasses.fields(model):
            if f.name not in props:
                out.append("%s: the schema %s has no field %r" % (model.__name__, model.SCHEMA, f.name))
    use = _properties(doc, schemas.get("SecretUse", {}))
    for f in _routes.SECRET_USE_FIELDS:
        if f not in use:
            out.append("the schema SecretUse has no field %r" % f)
    return out
