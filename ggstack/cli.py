"""`ggstack serve | routes | codegen` (also `python -m ggstack`)."""

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
    serve.add_argument("--no-default-models", dest="default_models", action="store_false", default=None,
                       help="do not register the bundled models")

    routes = commands.add_parser("routes", help="list operations, their paths and whether they are implemented")
    routes.add_argument("--missing", action="store_true", help="only operations without a handler (501)")

    codegen = commands.add_parser("codegen", help="regenerate generated/ from specs/")
    codegen.add_argument("--check", action="store_true", help="fail if generated/ is out of date")

    commands.add_parser("hash-key", help="read an API key on stdin, print the sha256 the run config's "
                                         "api_keys entry takes")

    args = parser.parse_args(argv)
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

    try:
        settings = load_settings(args.config, host=args.host, port=args.port, data_dir=args.data_dir,
                                 validate_responses=args.validate_responses,
                                 default_models=args.default_models)
    except ConfigError as exc:
        print(f"ggstack: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level=settings.log_level.lower(), access_log=settings.access_log,
                timeout_graceful_shutdown=5)
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


def codegen_command(check: bool) -> int:
    from codegen.generate import check as check_generated
    from codegen.generate import generate

    if check:
        return check_generated()
    generate()
    print("generated/ written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
