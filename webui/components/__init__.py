"""Panels of the web UI, one module per area: annotate, explore (segment/uncertainty/attention), learn."""
