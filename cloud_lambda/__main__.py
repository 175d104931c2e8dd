"""``python -m cloud_lambda catalog|search-image ...``: the cloud package's own commands (``visual-search`` has
them too); the cloud image needs neither ``simulator`` nor ``edge_component`` to run them."""

from model.hub import main

raise SystemExit(main(package="cloud_lambda", prog="python -m cloud_lambda"))
