"""The only code that talks to Docker: the ComposeBackend seam (python-on-whales + SDK, and a fake), image builds, the base image, cleanup."""
