"""The generated client has one sync and one async method per operationId, bound where clients should call it."""

from __future__ import annotations

import inspect
from typing import Literal, get_origin

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


def test_spec_named_enums_and_wrappers_read_as_their_values() -> None:
    """Root models are collapsed into the fields using them: no `.root` between a caller and a value."""
    from generated.models import llama_stack_stable as stable

    assert get_origin(stable.Model.model_fields["model_type"].annotation) is Literal
    model = stable.Model.model_validate({"identifier": "m", "provider_id": "p", "type": "model",
                                         "model_type": "llm", "metadata": {}})
    assert model.model_type == "llm"
