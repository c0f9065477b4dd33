"""Shield registrations, kept in the SQL metadata store so they survive restarts.

A shield names a guard: an LLM registered in ggstack (`provider_shield_id`, or `params.model`,
or else the shield id itself), with its categories configured in `params`.
"""

from __future__ import annotations

from typing import Any

from ggstack.core.errors import AlreadyExistsError, InvalidValueError, NotFoundError, UnknownIdError
from ggstack.safety.llama_guard import categories

KIND = "shield"
PROVIDER = "llama-guard"

#: What a client is told when it asks for a guard and none is registered under that name.
HOW_TO_REGISTER = ("register one with POST /v1/shields {\"shield_id\": \"<name>\", \"provider_shield_id\": "
                   "\"<an LLM registered in /v1/models, e.g. a Llama Guard 3 GGUF>\"}")


class ShieldRegistry:
    """Register, find and forget shields; the guard model must be a registered LLM."""

    def __init__(self, metadata: Any, models: Any) -> None:
        self._metadata = metadata
        self._models = models

    async def register(self, shield_id: str, *, provider_shield_id: str | None = None,
                       provider_id: str | None = None, params: dict[str, Any] | None = None) -> dict[str, Any]:
        if provider_id not in (None, PROVIDER):
            raise UnknownIdError(f"provider_id '{provider_id}' is not a safety provider here; use '{PROVIDER}'",
                                 field="provider_id")
        params = dict(params or {})
        model = params.get("model") or provider_shield_id or shield_id
        if not isinstance(model, str):
            raise InvalidValueError("params.model must be a model id", field="params.model")
        spec = self._models.get(model)  # NotFoundError (404) names the model
        if spec.model_type != "llm":
            raise InvalidValueError(f"Model '{model}' is an embedding model; a guard must be an LLM",
                                    field="provider_shield_id")
        if not shield_id:
            raise InvalidValueError("shield_id must not be empty", field="shield_id")
        categories(params)  # refuse bad categories now, not at the first check
        if await self._metadata.get(KIND, shield_id) is not None:
            raise AlreadyExistsError(f"Shield '{shield_id}' already exists")
        shield = {"identifier": shield_id, "provider_resource_id": model, "provider_id": PROVIDER,
                  "type": "shield", "params": params}
        await self._metadata.put(KIND, shield_id, shield)
        return shield

    async def get(self, shield_id: str) -> dict[str, Any]:
        shield = await self._metadata.get(KIND, shield_id)
        if shield is None:
            raise NotFoundError(f"Shield '{shield_id}' not found", kind=KIND, identifier=shield_id)
        return shield

    async def list(self) -> list[dict[str, Any]]:
        return (await self._metadata.list(KIND, limit=None, order="asc")).items

    async def unregister(self, shield_id: str) -> None:
        await self.get(shield_id)
        await self._metadata.delete(KIND, shield_id)

    async def for_use(self, name: str, *, field: str) -> dict[str, Any]:
        """The shield to run for `name` (a shield id, or the guard model of exactly one shield).

        Unknown names are a 400 that says how to register a guard: the name is a request value,
        not a path.
        """
        shield = await self._metadata.get(KIND, name)
        if shield is not None:
            return shield
        using = [s for s in await self.list() if s["provider_resource_id"] == name]
        if using:
            return using[0]
        raise UnknownIdError(f"no shield or guard model named '{name}'; {HOW_TO_REGISTER}", field=field)
