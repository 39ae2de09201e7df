"""Bundled search spaces (YAML); `search_spaces/` at the repository root links here."""
