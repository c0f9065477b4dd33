"""`ggstack contract`: Schemathesis against any deployment, with a report a person reads."""
