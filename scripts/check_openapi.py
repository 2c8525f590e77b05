#!/usr/bin/env python3
"""Checks openapi/openapi.json against template.yaml: the document is a valid OpenAPI 3.1
description (openapi-spec-validator), every route the template gives API Gateway is described,
and every described operation is reachable through one of the template's routes. The routers
are checked against the document by tools/devtools/tests/openapi_routes.rs.
Usage: check_openapi.py (run with the fuzzing venv's python, which has the validator)."""
import json
import pathlib
import sys

from openapi_spec_validator import validate

from gen_events import template_routes

ROOT = pathlib.Path(__file__).resolve().parent.parent
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def described_operations(doc):
    return {(m.upper(), path) for path, item in doc["paths"].items() for m in item if m in METHODS}


def route_of(operation, routes):
    """The template route that carries a described operation: the same path, or a greedy
    `{proxy+}` route whose prefix the path extends (API Gateway routes cannot end in "/")."""
    method, path = operation
    if (method, path) in routes:
        return (method, path)
    greedy = [(m, r) for m, r in routes if m == method and r.endswith("/{proxy+}")
              and path.startswith(r[: -len("{proxy+}")]) and len(path) >= len(r) - len("{proxy+}")]
    return max(greedy, key=lambda r: len(r[1]), default=None)


def main():
    doc = json.loads((ROOT / "openapi" / "openapi.json").read_text())
    validate(doc)
    routes = template_routes()
    operations = described_operations(doc)
    problems = [f"{m} {p}: described, but no route of template.yaml carries it"
                for m, p in sorted(operations) if route_of((m, p), routes) is None]
    carried = {route_of(o, routes) for o in operations}
    problems += [f"{m} {p}: a route of template.yaml that the document does not describe"
                 for m, p in sorted(routes - carried)]
    missing_ids = [f"{m} {p}" for p, item in doc["paths"].items() for m, o in item.items()
                   if m in METHODS and not o.get("operationId")]
    problems += [f"{o}: no operationId" for o in missing_ids]
    for p in problems:
        print(f"openapi: {p}", file=sys.stderr)
    print(f"openapi: valid OpenAPI {doc['openapi']}; {len(operations)} operations, "
          f"{len(routes)} template routes; {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
