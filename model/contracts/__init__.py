"""The contracts room: what the device, the local rule bridge and the cloud must agree on, defined once.

Why here, inside ``model/``: the layering lets every side import ``model`` and lets ``model`` import none of
them (``tests/model/test_layering.py``), and the top level is fixed (no new top-level directories). A
contract kept in ``edge_component`` made the cloud image import the device package; kept in
``cloud_lambda`` it would make the device ship the cloud. So the shared agreements live in this one
subpackage that all three import, and nothing here imports beyond the standard library and numpy:

- :mod:`model.contracts.errors` — the project's error base and :class:`~model.contracts.errors.Rejected`
  (``reason`` code + message) for anything refused at a door.
- :mod:`model.contracts.reasons` — every reason code a rejection may carry, with what it means.
- :mod:`model.contracts.limits` — the size limits (MQTT payload, status message).
- :mod:`model.contracts.thing_name` — device ids are AWS IoT thing names, at every door.
- :mod:`model.contracts.bounded_json` — the one reader for JSON from outside (size, depth, finite numbers).
- :mod:`model.contracts.topics` — the MQTT topics: build and parse.
- :mod:`model.contracts.wire` — the feature message codec (wire version 1).
- :mod:`model.contracts.status` — the status message: build, encode, parse (device and cloud), "offline".
- :mod:`model.contracts.thumbnail` — the opt-in query thumbnail message (a small JPEG of the prepared frame).
- :mod:`model.contracts.model_file` — the featurizer model file (input/output names, variants, sidecar).

docs/architecture.md describes each contract and names its module here.
"""
