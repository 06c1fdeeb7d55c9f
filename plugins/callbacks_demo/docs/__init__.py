"""Sample documents for ``callbacks demo`` (Markdown files, shipped as package data)."""
