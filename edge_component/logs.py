"""Structured JSON-lines logs for the device.

Greengrass captures a component's stdout/stderr into ``/greengrass/v2/logs/<component>.log``; JSON lines
there can be filtered with ``jq`` or forwarded by the log manager without a parser per message format.
The formatter is the product-wide one in :mod:`model.logs`.
"""

from model.logs import JsonLinesFormatter, setup_logging

__all__ = ["JsonLinesFormatter", "setup_logging"]
