"""Startup and wiring: settings, the per-app context, the lifespan that opens engines and stores."""
