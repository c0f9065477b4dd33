"""Providers: which provider implements each API, as the run config declares them."""
