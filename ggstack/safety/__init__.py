"""Safety: shields backed by a Llama Guard–style model registered in ggstack.

`shields` keeps the registrations (SQL metadata store); `llama_guard` builds the guard's prompt,
constrains its verdict with a grammar and reads probabilities from the verdict's logprobs;
`check` runs a shield over a conversation (the function other areas, e.g. agents' input/output
shields, call).
"""

from ggstack.safety.check import Verdict, check_messages, check_text
from ggstack.safety.shields import ShieldRegistry

__all__ = ["ShieldRegistry", "Verdict", "check_messages", "check_text"]
