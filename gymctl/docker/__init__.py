"""The only code that talks to Docker: image builds (Docker SDK), compose (python-on-whales), the offline base image, cleanup."""
