"""A contract run as text for the terminal, JUnit XML for CI, and one HTML page for people."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import jinja2

from ggstack.contract.runner import ContractRun, OperationResult

MARKS = {"passed": "ok  ", "failed": "FAIL", "not implemented": "n/i ", "errored": "ERR "}


def text_report(run: ContractRun) -> str:
    lines = [replay_note(run)] if run.replay_env else []
    for result in run.results:
        statuses = ", ".join(f"{code}x{n}" for code, n in sorted(result.statuses.items()))
        lines.append(f"{MARKS[result.outcome]} {result.spec:<26} {result.label:<60} {result.operation_id}"
                     f"  [{result.cases} requests: {statuses}]")
        if result.outcome == "not implemented":
            continue
        for failure in result.failures:
            lines.append(f"     - {failure.title} ({failure.check}, answered {failure.status}, {failure.count}x)")
            for message_line in failure.message.splitlines():
                lines.append(f"       {message_line}")
            if failure.schema_path:
                lines.append(f"       schema: {failure.schema_path}")
            # A stateful failure replays as a chain of requests, one curl a line.
            lines.append("       replay: " + failure.curl.replace("\n", "\n               "))
        for error in result.errors:
            lines.append(f"     - error: {error}")
    lines.extend(f"fatal: {message}" for message in run.fatal)
    lines.append(summary_line(run))
    return "\n".join(lines)


def replay_note(run: ContractRun) -> str:
    exports = " ".join(f"{name}=..." for name in run.replay_env)
    return f"Replays read the credentials passed from the environment: export {exports} before pasting them."


def summary_line(run: ContractRun) -> str:
    counts = ", ".join(f"{run.count(o)} {o}" for o in ("passed", "failed", "not implemented", "errored"))
    return f"{len(run.results)} operations against {run.url}: {counts}"


def junit_xml(run: ContractRun) -> str:
    """One <testsuite> per document, one <testcase> per operation; not implemented is <skipped>."""
    root = ET.Element("testsuites", name="ggstack contract")
    for spec in dict.fromkeys(r.spec for r in run.results):
        results = [r for r in run.results if r.spec == spec]
        suite = ET.SubElement(root, "testsuite", name=spec, tests=str(len(results)),
                              failures=str(sum(r.outcome == "failed" for r in results)),
                              errors=str(sum(r.outcome == "errored" for r in results)),
                              skipped=str(sum(r.outcome == "not implemented" for r in results)))
        for result in results:
            junit_case(suite, result)
    for message in run.fatal:
        suite = ET.SubElement(root, "testsuite", name="run", tests="1", errors="1")
        ET.SubElement(ET.SubElement(suite, "testcase", name="load"), "error", message=message)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def junit_case(suite: ET.Element, result: OperationResult) -> None:
    case = ET.SubElement(suite, "testcase", classname=result.spec, name=f"{result.label} ({result.operation_id})")
    if result.outcome == "not implemented":
        ET.SubElement(case, "skipped", message=f"not implemented (answered {sorted(result.statuses)})")
    for failure in result.failures if result.outcome == "failed" else ():
        element = ET.SubElement(case, "failure", message=failure.title, type=failure.check)
        element.text = "\n".join(filter(None, [failure.message, failure.schema_path and f"schema: {failure.schema_path}",
                                               f"replay: {failure.curl}"]))
    for error in result.errors:
        ET.SubElement(case, "error", message=error)


def html_report(run: ContractRun) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    return env.get_template("report.html.jinja").render(run=run, summary=summary_line(run),
                                                      replay_note=replay_note(run) if run.replay_env else None)
