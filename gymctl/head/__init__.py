"""The head server: the registry that every server of a deployment registers with."""
