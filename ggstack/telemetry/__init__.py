"""Telemetry: spans recorded per request and the queries over them."""
