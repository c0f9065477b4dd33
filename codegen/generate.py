"""Write generated/ from specs/: overlaid specs as JSON, pydantic models, route tables.

`generate(out)` is deterministic: the same specs give the same bytes. `check()` generates
into a temporary directory and compares it with the committed tree, which is how CI
catches a spec edited without regenerating.
"""

from __future__ import annotations

import difflib
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jinja2

import ggstack
from codegen.client import build_client_context, defined_classes
from codegen.context import SpecContext, build_context
from codegen.diff import diff_documents, summary
from codegen.merge import merge_specs
from codegen.validate import check_document

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "generated"
TEMPLATES = Path(__file__).resolve().parent / "templates"
LINE_WIDTH = 110

# Pinned with the datamodel-code-generator version in pyproject.toml; changing either changes output.
DATAMODEL_FLAGS = (
    "--input-file-type", "openapi",
    "--output-model-type", "pydantic_v2.BaseModel",
    "--target-python-version", "3.11",
    "--openapi-scopes", "schemas",
    "--disable-timestamp",
    "--use-union-operator",
    "--use-standard-collections",
    "--use-schema-description",
    "--use-double-quotes",
    "--field-constraints",
    "--enum-field-as-literal", "all",
    # A field typed by a named enum or union reads as its value (`model.model_type == "llm"`), in the
    # handlers and the generated client alike, rather than through a RootModel's `.root`.
    "--collapse-root-models",
    "--formatters", "builtin",
    # JSON Schema 2020-12 treats formats as annotations; so must the models, or a spec-valid
    # "http://" or date string would be refused.
    "--type-mappings", "string+uri=string", "string+date-time=string",
)


def py(value: Any, indent: int = 4) -> str:
    """A Python literal for `value`: one line when it fits, else one item per line."""
    flat = _flat(value)
    if len(flat) + indent <= LINE_WIDTH or not isinstance(value, (dict, list, tuple)) or not value:
        return flat
    pad = " " * (indent + 4)
    if isinstance(value, dict):
        items = [f"{pad}{_flat(k)}: {py(v, indent + 4)}," for k, v in value.items()]
        return "{\n" + "\n".join(items) + "\n" + " " * indent + "}"
    opener, closer = ("(", ")") if isinstance(value, tuple) else ("[", "]")
    items = [f"{pad}{py(v, indent + 4)}," for v in value]
    return opener + "\n" + "\n".join(items) + "\n" + " " * indent + closer


def _flat(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flat(k)}: {_flat(v)}" for k, v in value.items()) + "}"
    if isinstance(value, tuple):
        inner = ", ".join(_flat(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(_flat(v) for v in value) + "]"
    raise TypeError(f"cannot print {type(value).__name__} as a literal")


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters["py"] = py
    return env


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def as_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


#: How the Llama Stack documents spell "any JSON value".
FREE_FORM_TYPES = frozenset({"null", "boolean", "number", "string", "array", "object"})


def is_free_form(schema: Any) -> bool:
    """A `oneOf` of exactly the six JSON types, unconstrained (an array's `items: {}` at most): any value."""
    choices = schema.get("oneOf") if isinstance(schema, dict) else None
    return (isinstance(choices, list) and len(choices) == len(FREE_FORM_TYPES)
            and all(isinstance(c, dict) and "type" in c and c.get("items", {}) == {}
                    and set(c) <= {"type", "items"} for c in choices)
            and {c["type"] for c in choices} == FREE_FORM_TYPES)


def free_form_as_any(node: Any) -> Any:
    """`node` with every free-form schema made `{}` (its description kept), for the model generator.

    Given the `oneOf`, datamodel-code-generator writes `bool | float | str | list | dict | None`,
    and pydantic then turns a JSON 3 into 3.0: a client's metadata, filters and JSON schemas
    would come back changed. `{}` becomes `Any`, which keeps every value as the client sent
    it. Only the generator's input changes; the served documents keep the spec's words.
    """
    if isinstance(node, list):
        return [free_form_as_any(item) for item in node]
    if not isinstance(node, dict):
        return node
    if is_free_form(node):
        return {key: value for key, value in node.items() if key != "oneOf"}
    return {key: free_form_as_any(value) for key, value in node.items()}


def run_datamodel_codegen(document: dict[str, Any], name: str, output: Path, title: str) -> None:
    header = f"Models for {title}. Generated by `ggstack codegen` from {name}; do not edit by hand."
    with tempfile.TemporaryDirectory() as settings_dir:
        spec_file = Path(settings_dir, name)
        spec_file.write_text(as_json(free_form_as_any(document)), encoding="utf-8")
        command = [str(Path(sys.executable).parent / "datamodel-codegen"), "--input", str(spec_file),
                   "--output", str(output), "--custom-file-header", f'"""{header}"""', *DATAMODEL_FLAGS]
        # The formatter takes its line length from the pyproject.toml of the working directory;
        # give it one of ours so output does not depend on where codegen runs.
        Path(settings_dir, "pyproject.toml").write_text(
            f"[tool.datamodel-codegen]\nbuiltin-format-line-length = {LINE_WIDTH}\n", encoding="utf-8")
        done = subprocess.run(command, capture_output=True, text=True, cwd=settings_dir, check=False,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if done.returncode != 0:
        raise RuntimeError(f"datamodel-codegen failed on {name}:\n{done.stderr[-3000:]}")


def check_body_models(spec: SpecContext, models_file: Path) -> None:
    source = models_file.read_text(encoding="utf-8")
    for op in spec.operations:
        if op.body_model and f"class {op.body_model}(" not in source:
            raise RuntimeError(f"{op.operation_id}: model {op.body_model} not found in {models_file.name}")


def generate(out: Path = GENERATED) -> None:
    """Build the whole tree beside `out`, then swap it in, so readers never see it half written."""
    building = out.with_name(f".{out.name}.building")
    if building.exists():
        shutil.rmtree(building)
    write_tree(building)
    previous = out.with_name(f".{out.name}.previous")
    if out.exists():
        os.replace(out, previous)
    os.replace(building, out)
    shutil.rmtree(previous, ignore_errors=True)


def write_tree(out: Path) -> None:
    specs = build_context()
    env = environment()
    write(out / "__init__.py", '"""Code generated from specs/ by `ggstack codegen`; never edited by hand."""\n')
    write(out / "models" / "__init__.py", '"""Pydantic models, one module per spec."""\n')
    merged = merge_specs(specs, ggstack.__version__)
    for spec in specs:
        write(out / "openapi" / f"{spec.name}.json", as_json(spec.document))
    write(out / "openapi" / "merged.json", as_json(merged))
    with ThreadPoolExecutor(max_workers=len(specs)) as pool:
        jobs = [pool.submit(run_datamodel_codegen, spec.document, f"{spec.name}.json",
                            out / "models" / f"{spec.module}.py", spec.title) for spec in specs]
        # While the model generators run (in subprocesses): nothing invalid gets generated from.
        for spec in specs:
            check_document(spec.source, spec.document)
        check_document("merged.json (all documents merged)", merged)
        for job in jobs:
            job.result()
    for spec in specs:
        check_body_models(spec, out / "models" / f"{spec.module}.py")
        write(out / "routes" / f"{spec.module}.py", env.get_template("routes.py.jinja").render(spec=spec))
    write(out / "routes" / "__init__.py", env.get_template("routes_init.py.jinja").render(specs=specs))
    write_client(out, specs, env)


def write_client(out: Path, specs: list[SpecContext], env: jinja2.Environment) -> None:
    classes = {spec.module: defined_classes((out / "models" / f"{spec.module}.py").read_text(encoding="utf-8"))
               for spec in specs}
    methods = build_client_context(specs, classes)
    write(out / "client" / "__init__.py", env.get_template("client_init.py.jinja").render())
    write(out / "client" / "runtime.py", env.get_template("client_runtime.py.jinja").render())
    write(out / "client" / "api.py", env.get_template("client_api.py.jinja").render(
        methods=methods, modules=[spec.module for spec in specs]))


def read_served(out: Path = GENERATED) -> dict[str, dict[str, Any]]:
    """The overlaid documents as last generated (none before the first run)."""
    folder = out / "openapi"
    return {path.stem: json.loads(path.read_text(encoding="utf-8"))
            for path in sorted(folder.glob("*.json")) if path.stem != "merged"} if folder.is_dir() else {}


def changes_report(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> str:
    """What a regeneration changed in each served document (codegen/diff.py), for the person running it."""
    lines = []
    for name in sorted(before.keys() | after.keys()):
        if name not in before or name not in after:
            lines.append(f"{name}: document {'added' if name in after else 'removed'}")
        else:
            lines.append(summary(name, diff_documents(before[name], after[name])))
    return "\n".join(lines)


def check() -> int:
    """Regenerate into a temporary directory; 0 when generated/ matches, 1 with a diff summary."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "generated"
        generate(fresh)
        differences = compare(fresh, GENERATED)
    if not differences:
        print("generated/ is up to date")
        return 0
    print("generated/ is out of date; run `nox -s codegen` (or `ggstack codegen`) and commit the result:")
    for line in differences[:60]:
        print(line)
    return 1


def compare(fresh: Path, committed: Path) -> list[str]:
    lines: list[str] = []
    fresh_files = {p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    committed_files = {p.relative_to(committed) for p in committed.rglob("*")
                       if p.is_file() and "__pycache__" not in p.parts} if committed.exists() else set()
    for rel in sorted(fresh_files - committed_files):
        lines.append(f"missing: generated/{rel}")
    for rel in sorted(committed_files - fresh_files):
        lines.append(f"extra: generated/{rel}")
    for rel in sorted(fresh_files & committed_files):
        if not filecmp.cmp(fresh / rel, committed / rel, shallow=False):
            diff = difflib.unified_diff((committed / rel).read_text().splitlines(),
                                        (fresh / rel).read_text().splitlines(),
                                        f"generated/{rel}", f"fresh/{rel}", lineterm="", n=1)
            lines.append(f"differs: generated/{rel}")
            lines.extend(list(diff)[:12])
    return lines
