"""One client for the WMS REST API, shared by the ``ewms`` CLI, the TMS and scripts.

- :mod:`ewms_client.problem`: :class:`WMSError`, every failure with its RFC 7807 problem details;
- :mod:`ewms_client.retry`: :class:`RetryPolicy`, which failures are retried and how long to wait;
- :mod:`ewms_client.tokens`: bearer tokens (:class:`StaticToken`, OAuth2 :class:`ClientCredentials`);
- :mod:`ewms_client.connection`: :class:`Connection`, one request with the three above;
- :mod:`ewms_client.user`: :class:`WMSClient`, the user routes (workflows, taskforces, queues, queries).
- :mod:`ewms_client.device_login`: a person's sign-in by the OAuth2 device flow, saved and refreshed
  (:class:`~ewms_client.device_login.SavedLogin`, used by ``ewms login``).

The TMS routes are in :mod:`tms.wms_client`, on the same :class:`Connection`.
"""

from ewms_client.connection import Connection
from ewms_client.problem import WMSError
from ewms_client.retry import RetryPolicy
from ewms_client.tokens import ClientCredentials, StaticToken, TokenSource
from ewms_client.user import QUERY_KINDS, WMSClient

__all__ = [
    "QUERY_KINDS",
    "ClientCredentials",
    "Connection",
    "RetryPolicy",
    "StaticToken",
    "TokenSource",
    "WMSClient",
    "WMSError",
]
