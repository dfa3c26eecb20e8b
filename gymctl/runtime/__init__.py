"""The local runtime: instances as OS processes (all-in-one or one per instance), no Docker."""
