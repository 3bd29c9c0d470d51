"""REST handlers of the WMS, one module per resource: each parses the request, calls one operation
(``wms.operations``) or one read of the store, and answers; refusals are ``OperationError`` or ``Problem``."""
