"""The CLI: the only package that prints and exits."""
