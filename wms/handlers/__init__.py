"""REST handlers of the WMS, one module per resource."""
