"""Remote inference providers: OpenAI-compatible servers (vLLM, llama-server, Ollama, another ggstack)
whose models ggstack serves as its own.

`client.RemoteProvider` owns one provider's connection pool, concurrency bound, retries and
the mapping of its failures to domain errors; `flavours` holds what differs between server
kinds; `engines` implements the `ChatEngine` / `EmbeddingEngine` Protocols on top, so every
inference route runs on a remote model unchanged.
"""
