"""`ggstack serve | routes | codegen | contract | hash-key` (also `python -m ggstack`)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ggstack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--config", type=Path, help="run-config YAML (${env.VAR:=default} allowed)")
    serve.add_argument("--host", help="default 127.0.0.1")
    serve.add_argument("--port", type=int, help="default 8321")
    serve.add_argument("--data-dir", type=Path, help="where the database, files and vectors live")
    serve.add_argument("--validate-responses", action="store_true", default=None,
                       help="check every response against the spec; a mismatch becomes a 500")
    serve.add_argument("--log-format", choices=["text", "json"], help="json: one JSON object per log line")
    serve.add_argument("--no-default-models", dest="default_models", action="store_false", default=None,
                       help="do not register the bundled models")

    routes = commands.add_parser("routes", help="list operations, their paths and whether they are implemented")
    routes.add_argument("--missing", action="store_true", help="only operations without a handler (501)")

    codegen = commands.add_parser("codegen", help="regenerate generated/ from specs/")
    codegen.add_argument("--check", action="store_true", help="fail if generated/ is out of date")

    commands.add_parser("hash-key", help="read an API key on stdin, print the sha256 the run config's "
                                         "api_keys entry takes")

    add_contract_parser(commands)
    add_models_parser(commands)
    spec = commands.add_parser("spec", help="work with OpenAPI documents").add_subparsers(dest="spec_command",
                                                                                          required=True)
    spec_diff = spec.add_parser("diff", help="what changed between two versions of a document, breaking or not, "
                                             "and which handlers it touches")
    spec_diff.add_argument("old", help="a JSON/YAML file, or the name of a document ggstack serves")
    spec_diff.add_argument("new", help="a JSON/YAML file, or the name of a document ggstack serves")
    spec_diff.add_argument("--check", action="store_true", help="exit 1 when a change is breaking")
    spec_diff.add_argument("--allow-breaking", action="store_true", help="with --check: report, but exit 0")

    args = parser.parse_args(argv)
    if args.command == "contract":
        return contract_command(args)
    if args.command == "models":
        return models_command(args)
    if args.command == "spec":
        return spec_diff_command(args.old, args.new, args.check and not args.allow_breaking)
    if args.command == "serve":
        return serve_command(args)
    if args.command == "routes":
        return routes_command(args.missing)
    if args.command == "hash-key":
        return hash_key_command()
    return codegen_command(args.check)


def serve_command(args: argparse.Namespace) -> int:
    import uvicorn

    from ggstack.core.config import ConfigError, load_settings
    from ggstack.http.app import create_app
    from ggstack.http.serving import http_protocol
    from ggstack.telemetry.logs import configure_logging

    try:
        settings = load_settings(args.config, host=args.host, port=args.port, data_dir=args.data_dir,
                                 validate_responses=args.validate_responses,
                                 default_models=args.default_models, log_format=args.log_format)
    except ConfigError as exc:
        print(f"ggstack: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    # httpx logs every request to a remote provider at INFO: a line per proxied request, as
    # the access log would be (off by default for its cost); failures are logged by ggstack.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    # Without its own config uvicorn's loggers reach the root handler, so JSON covers them too.
    log_config = None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level=settings.log_level.lower(), access_log=settings.access_log,
                timeout_graceful_shutdown=5, log_config=log_config, http=http_protocol())
    return 0


def routes_command(missing_only: bool) -> int:
    from generated.routes import OPERATIONS
    from ggstack.http.routing import find_handler

    rows = []
    for op in OPERATIONS:
        implemented = find_handler(op) is not None
        if missing_only and implemented:
            continue
        state = "ok " if implemented else "501"
        for path in op.paths:
            rows.append(f"{state} {op.method:<6} {path:<75} {op.operation_id}")
    print("\n".join(rows))
    return 0


def hash_key_command() -> int:
    from ggstack.core.access import key_digest

    key = sys.stdin.readline().strip()
    if not key:
        print("ggstack: no key on stdin", file=sys.stderr)
        return 2
    print(key_digest(key))
    return 0


def add_contract_parser(commands: argparse._SubParsersAction) -> None:
    contract = commands.add_parser(
        "contract", help="contract-test a running server (any vendor's) against the overlaid documents",
        description="Run Schemathesis (examples, coverage, fuzzing; --stateful adds link-driven sequences) "
                    "against URL and report per operation: passed, failed (with a curl replay and the schema "
                    "path broken) or not implemented (501, or 404/405 on a parameterless path). "
                    "Exit 0: no failures; 1: failures; 2: the run could not start.")
    contract.add_argument("url", help="the server's root, e.g. http://127.0.0.1:8321 (each document's own "
                                      "server path, such as Dell's /v1, is appended)")
    contract.add_argument("--spec", action="append", metavar="NAME|FILE",
                          help="a document ggstack serves (llama-stack-stable, llama-stack-experimental, "
                               "llama-stack-deprecated, llama-stack-inference, dell-pro-ai-studio) or an "
                               "OpenAPI JSON/YAML file; repeatable; default: the five ggstack serves")
    contract.add_argument("--include", metavar="REGEX", help="only operations whose path or operationId matches")
    contract.add_argument("--examples", type=int, default=10, metavar="N",
                          help="generated cases per operation in the fuzzing phase (default 10)")
    contract.add_argument("--stateful", action="store_true", help="also run link-driven request sequences")
    contract.add_argument("--header", "-H", action="append", default=[], metavar="'NAME: VALUE'",
                          help="sent with every request; repeatable (a credential header, which Schemathesis "
                               "masks, replays as $GGSTACK_<NAME>)")
    contract.add_argument("--api-key", help="sent as `Authorization: Bearer KEY` (replays read it from $GGSTACK_API_KEY)")
    contract.add_argument("--exclude-check", action="append", default=[], metavar="CHECK",
                          help="a Schemathesis check to skip, e.g. positive_data_acceptance; repeatable")
    contract.add_argument("--seed", type=int, default=0, help="generation seed (default 0: the same cases each run)")
    contract.add_argument("--report", type=Path, metavar="junit.xml", help="write a JUnit XML report")
    contract.add_argument("--html", type=Path, metavar="report.html", help="write an HTML report")
    contract.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")


def contract_command(args: argparse.Namespace) -> int:
    from ggstack.contract.report import html_report, junit_xml, text_report
    from ggstack.contract.runner import ContractError, Options, replay_placeholders, run_contract

    headers = {}
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            print(f"ggstack contract: --header {header!r} is not 'Name: value'", file=sys.stderr)
            return 2
        headers[name.strip()] = value.strip()
    if args.api_key:
        headers["Authorization"] = f"Bearer {args.api_key}"
    specs = args.spec or ["llama-stack-stable", "llama-stack-experimental", "llama-stack-deprecated",
                          "llama-stack-inference", "dell-pro-ai-studio"]
    options = Options(url=args.url, specs=specs, include=args.include, examples=args.examples,
                      stateful=args.stateful, headers=headers, exclude_checks=args.exclude_check, seed=args.seed,
                      placeholders=replay_placeholders(headers, api_key=bool(args.api_key)))
    progress = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    try:
        run = run_contract(options, progress)
    except ContractError as exc:
        print(f"ggstack contract: {exc}", file=sys.stderr)
        return 2
    print(text_report(run))
    if args.report:
        args.report.write_text(junit_xml(run), encoding="utf-8")
    if args.html:
        args.html.write_text(html_report(run), encoding="utf-8")
    if run.fatal:
        return 2
    return 0 if run.ok else 1


def add_models_parser(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser("models", help="list, register or remove the models a data directory serves "
                                                "(no server needed; the next `serve` loads them)")
    models.add_argument("--config", type=Path, help="run-config YAML, as `serve` takes it")
    models.add_argument("--data-dir", type=Path, help="where the database lives")
    actions = models.add_subparsers(dest="models_command", required=True)
    actions.add_parser("list", help="bundled, run-config and registered models")
    register = actions.add_parser("register", help="a GGUF file in model_dirs, or a sentence-transformers BERT "
                                                    "folder (converted to GGUF with a progress bar)")
    register.add_argument("path", type=Path)
    register.add_argument("--id", dest="identifier", help="the model id (default: the file or folder name)")
    register.add_argument("--type", dest="model_type", choices=["llm", "embedding"],
                          help="default: llm for a GGUF, embedding for a BERT folder")
    remove = actions.add_parser("remove", help="forget a registered model (its file stays)")
    remove.add_argument("identifier")


def models_command(args: argparse.Namespace) -> int:
    from ggstack.core import model_admin
    from ggstack.core.config import ConfigError, load_settings

    try:
        settings = load_settings(args.config, data_dir=args.data_dir)
    except ConfigError as exc:
        print(f"ggstack: {exc}", file=sys.stderr)
        return 2
    try:
        if args.models_command == "list":
            for row in model_admin.list_models(settings):
                spec = row.spec
                where = str(spec.path) if spec.path is not None else f"{spec.provider_id}:{spec.provider_model_id}"
                print(f"{spec.identifier:<32} {spec.model_type:<10} {row.source:<11} {where}")
        elif args.models_command == "register":
            spec = model_admin.register(settings, args.path, args.identifier, args.model_type)
            print(f"registered {spec.identifier} ({spec.model_type}, {spec.path}); the next `ggstack serve` "
                  "loads it")
        else:
            model_admin.remove(settings, args.identifier)
            print(f"removed {args.identifier}")
    except model_admin.ModelAdminError as exc:
        print(f"ggstack models: {exc}", file=sys.stderr)
        return 1
    return 0


def spec_diff_command(old: str, new: str, fail_on_breaking: bool) -> int:
    from codegen.diff import diff_documents, summary
    from ggstack.http.docs import DocumentError, read_document

    try:
        (old_name, old_document), (new_name, new_document) = read_document(old), read_document(new)
    except DocumentError as exc:
        print(f"ggstack spec diff: {exc}", file=sys.stderr)
        return 2
    changes = diff_documents(old_document, new_document)
    print(summary(f"{old_name} -> {new_name}", changes))
    return 1 if fail_on_breaking and any(c.breaking for c in changes) else 0


def codegen_command(check: bool) -> int:
    from codegen.generate import changes_report, generate, read_served
    from codegen.generate import check as check_generated

    if check:
        return check_generated()
    before = read_served()
    generate()
    print(changes_report(before, read_served()))
    print("generated/ written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
