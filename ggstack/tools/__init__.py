"""Tools an agent (or a client, through the tool-runtime routes) can run on the server.

- `definitions`: tool groups and tools as records, and a tool's parameters as the JSON
  schema the generation layer constrains calls with.
- `rag`: the built-in `builtin::rag` group (`knowledge_search`) over vector stores.
- `mcp`: tools of a Model Context Protocol server, listed and called over the network.
- `runtime`: the registry of groups and the one `invoke` every kind goes through.
"""
