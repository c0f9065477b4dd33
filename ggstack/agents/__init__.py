"""Llama Stack agents: configs, sessions and turns, and the loop that runs a turn.

- `records`: agents, sessions and turns in the metadata store (a restart loses none of them).
- `history`: a session's earlier turns as chat messages for the next inference.
- `loop`: one turn: inference -> tool calls (server tools run here, client tools pause the
  turn until `resume`) -> inference ... until an answer or `max_infer_iters`, as the spec's
  stream events; a whole turn is the same events, collected.
- `spans`: each turn and each step as a telemetry span (the step spans are the turn's children).
"""
