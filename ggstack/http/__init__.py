"""HTTP layer: routing, parameter and body validation, rendering, errors, API documents."""
