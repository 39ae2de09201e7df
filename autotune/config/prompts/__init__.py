"""Built-in prompt sets (JSONL, one {"prompt": ...} per line)."""
