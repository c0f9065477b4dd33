"""The generated client has one sync and one async method per operationId, bound where clients should call it."""

from __future__ import annotations

import inspect

from generated.client import AsyncClient, Client, api
from generated.routes import OPERATIONS


def methods(cls: type) -> set[str]:
    return {name for name, _ in inspect.getmembers(cls, inspect.isfunction) if not name.startswith("_")} \
        - {"close"}


def test_one_method_per_operation_id_sync_and_async() -> None:
    ids = {op.operation_id for op in OPERATIONS}
    assert methods(Client) == ids
    assert methods(AsyncClient) == ids
    assert all(inspect.iscoroutinefunction(getattr(AsyncClient, name)) for name in ids)


def test_shared_operation_is_bound_to_the_stable_path() -> None:
    assert api.OPENAI_CHAT_COMPLETION.path == "/v1/chat/completions"
    assert api.DELL_LIST_MODELS.path == "/v1/openai/models"


def test_arguments_are_keyword_only_required_first() -> None:
    signature = inspect.signature(Client.openai_list_files_in_vector_store)
    params = list(signature.parameters.values())[1:]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)
    assert params[0].name == "vector_store_id" and params[0].default is inspect.Parameter.empty
