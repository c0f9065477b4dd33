"""Prompts: versioned prompt templates kept in the SQL metadata store.

A prompt is one document holding all its versions, so a new version and the default
pointer change in one atomic update: two clients updating from the same version cannot
both succeed (the optimistic `version` check), and no crash leaves a half-made version.
As in the reference server, an unknown prompt or version is a 400 "Invalid value", a
prompt without an explicit version reads its default version, and the template's
`{{ name }}` placeholders must all be declared in `variables`.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from generated.models.llama_stack_stable import (
    CreatePromptRequest,
    ListPromptsResponse,
    Prompt,
    SetDefaultVersionRequest,
    UpdatePromptRequest,
)
from ggstack.core.context import Context
from ggstack.http.errors import InvalidRequest

PROMPT = "prompt"
#: Versions one prompt may have; a prompt past it is deleted or re-created, not updated.
MAX_VERSIONS = 1000
PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def template_variables(template: str, declared: list[Any] | None) -> list[str]:
    """The declared variables, checked; when none are declared, the template's own, in order."""
    used = list(dict.fromkeys(PLACEHOLDER.findall(template)))
    if declared is None:
        return used
    declared = [getattr(name, "root", name) for name in declared]  # items with a pattern are RootModels
    undeclared = [name for name in used if name not in declared]
    if undeclared:
        raise InvalidRequest(f"Invalid value: Template contains undeclared variables: {', '.join(undeclared)}", param="variables")
    return list(dict.fromkeys(declared))


def not_found(prompt_id: str, version: int | None = None) -> InvalidRequest:
    which = f"Prompt '{prompt_id}'" + (f" version {version}" if version is not None else "")
    return InvalidRequest(f"Invalid value: {which} not found")


def prompt_of(doc: dict[str, Any], version: int) -> Prompt:
    stored = doc["versions"][str(version)]
    return Prompt(prompt=stored["prompt"], version=version, prompt_id=doc["prompt_id"],
                  variables=stored["variables"], is_default=version == doc["default_version"])


async def stored(ctx: Context, prompt_id: str) -> dict[str, Any]:
    doc = await ctx.metadata.get(PROMPT, prompt_id)
    if doc is None:
        raise not_found(prompt_id)
    return doc


async def create_prompt(body: CreatePromptRequest, ctx: Context) -> Prompt:
    variables = template_variables(body.prompt, body.variables)
    prompt_id = "pmpt_" + secrets.token_hex(24)
    doc = {"prompt_id": prompt_id, "default_version": 1, "latest_version": 1,
           "versions": {"1": {"prompt": body.prompt, "variables": variables}}}
    await ctx.metadata.put(PROMPT, prompt_id, doc)
    return prompt_of(doc, 1)


async def list_prompts(ctx: Context) -> ListPromptsResponse:
    """Each prompt once, at its default version, oldest first."""
    page = await ctx.metadata.list(PROMPT, limit=None, order="asc")
    return ListPromptsResponse(data=[prompt_of(doc, doc["default_version"]) for doc in page.items])


async def get_prompt(prompt_id: str, ctx: Context, version: int | None = None) -> Prompt:
    doc = await stored(ctx, prompt_id)
    version = doc["default_version"] if version is None else version
    if str(version) not in doc["versions"]:
        raise not_found(prompt_id, version)
    return prompt_of(doc, version)


async def update_prompt(prompt_id: str, body: UpdatePromptRequest, ctx: Context) -> Prompt:
    variables = template_variables(body.prompt, body.variables)

    def change(doc: dict[str, Any]) -> None:
        latest = doc["latest_version"]
        if body.version != latest:
            raise InvalidRequest(f"Invalid value: Version {body.version} is not the latest version of prompt '{prompt_id}'; "
                                 f"update from version {latest}", param="version")
        if len(doc["versions"]) >= MAX_VERSIONS:
            raise InvalidRequest(f"Invalid value: Prompt '{prompt_id}' has {MAX_VERSIONS} versions, the most one prompt may have",
                                 param="version")
        doc["latest_version"] = latest + 1
        doc["versions"][str(latest + 1)] = {"prompt": body.prompt, "variables": variables}
        if body.set_as_default:
            doc["default_version"] = latest + 1

    doc = await ctx.metadata.update(PROMPT, prompt_id, change)
    if doc is None:
        raise not_found(prompt_id)
    return prompt_of(doc, doc["latest_version"])


async def delete_prompt(prompt_id: str, ctx: Context) -> None:
    if not await ctx.metadata.delete(PROMPT, prompt_id):
        raise not_found(prompt_id)


async def list_prompt_versions(prompt_id: str, ctx: Context) -> ListPromptsResponse:
    doc = await stored(ctx, prompt_id)
    return ListPromptsResponse(data=[prompt_of(doc, int(v)) for v in sorted(doc["versions"], key=int)])


async def set_default_version(prompt_id: str, body: SetDefaultVersionRequest, ctx: Context) -> Prompt:
    def change(doc: dict[str, Any]) -> None:
        if str(body.version) not in doc["versions"]:
            raise not_found(prompt_id, body.version)
        doc["default_version"] = body.version

    doc = await ctx.metadata.update(PROMPT, prompt_id, change)
    if doc is None:
        raise not_found(prompt_id)
    return prompt_of(doc, body.version)
