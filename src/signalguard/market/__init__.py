"""Market data shared by the browser tab and the cloud worker (no platform imports)."""
