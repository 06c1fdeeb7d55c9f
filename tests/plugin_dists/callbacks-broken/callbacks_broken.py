"""A plugin whose import fails, as a real broken install would."""

raise ImportError("callbacks_broken needs a library that is not installed")
