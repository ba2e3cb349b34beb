"""Model sessions, model resolution and runners (no Ray)."""
