"""(placeholder: being written)."""
