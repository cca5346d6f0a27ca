"""Data stages: fetch, validate, patch extraction, and torch datasets over the patch store."""
