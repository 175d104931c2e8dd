"""``SearchService``: everything the search and API Lambdas do, loaded once per container.

Every message goes to the index of its own model id (:mod:`cloud_lambda.search.catalogs`), so cameras on
different models are all served during a rollout; an id with no index is refused (``no_index_for_model``).
A bad message is rejected with its reason and nothing is written; a Redis outage raises
:class:`~cloud_lambda.matches.MatchStoreUnavailable` so the Lambda invocation fails and IoT retries it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import numpy as np

from cloud_lambda.catalog.layout import Catalog
from cloud_lambda.catalog.roots import open_root
from cloud_lambda.device_notes import DeviceNotes
from cloud_lambda.index.fold import search_items
from cloud_lambda.logs import Counters, get_logger
from cloud_lambda.matches import MatchStore, MatchStoreUnavailable, connect
from cloud_lambda.metadata import MetadataStore
from cloud_lambda.publish import MatchPublisher, MatchPublishError, create_match_publisher
from cloud_lambda.search.catalogs import CatalogSet, LoadedCatalog, NoIndexForModel
from cloud_lambda.settings import CloudSettings
from model.contracts import bounded_json
from model.contracts.errors import Rejected, VisualSearchError
from model.contracts.limits import MAX_PAYLOAD_BYTES
from model.contracts.status import encode_status, parse_status
from model.contracts.thing_name import is_thing_name
from model.contracts.thumbnail import decode_thumbnail
from model.contracts.topics import matches_topic, parse_topic
from model.contracts.wire import decode
from model.logs import log_event

METADATA_CACHE_ITEMS = 200_000
COUNTERS_EVERY = 1000
RECORD_VERSION = 1
MAX_CLOCK_AHEAD_S = 300
MAX_RECORD_BYTES = MAX_PAYLOAD_BYTES
"""A match record is published on ``visualsearch/{device}/matches``: IoT Core's payload limit bounds it."""
# Keys the IoT rule adds to the device's payload (SELECT *, topic(2) AS topic_device ...).
RULE_KEYS = ("topic_device", "topic_kind")


def _size(record: dict[str, Any]) -> int:
    return len(json.dumps(record, separators=(",", ":"), allow_nan=False).encode("utf-8"))


class PhotoModelUnavailable(VisualSearchError, RuntimeError):
    """Photo search was asked for but no (matching) featurizer is configured."""


def _match_publisher(settings: CloudSettings) -> MatchPublisher:
    """The configured publisher of match records (IoT Core, MQTT or none)."""
    password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
    return create_match_publisher(settings.match_publish, settings.iot_endpoint, settings.mqtt_username, password)


class SearchService:
    def __init__(
        self,
        settings: CloudSettings,
        publisher: MatchPublisher | None = None,
        *,
        catalog: Catalog | None = None,
        metadata: MetadataStore | None = None,
        match_store: MatchStore | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.settings = settings
        self.log = logger or get_logger(__name__)
        self.counters = Counters()
        started = time.perf_counter()
        self.catalogs = CatalogSet(
            open_root(catalog.folder if catalog is not None else settings.index_dir),
            ef_search=settings.hnsw_ef_search,
            metadata_spec=settings.metadata,
            budget_bytes=settings.index_budget_bytes(),
            relist_s=settings.index_relist_s,
            reload_s=settings.index_reload_s,
            log=self.log,
            counters=self.counters,
            preloaded=catalog,
            metadata=metadata,
        )
        # The newest index is loaded now, so a broken root fails at start-up; the others on their first message.
        default = self.catalogs.get(self.catalogs.newest())
        self.matches = match_store or MatchStore(
            connect(settings.redis_url, settings.redis_timeout_s),
            settings.match_list_cap,
            settings.seen_ttl_s,
            settings.device_ttl_s,
            settings.max_devices,
        )
        self.notes = DeviceNotes(self.matches.client)
        self.publisher = publisher if publisher is not None else _match_publisher(settings)
        self._featurizer: Any = None
        self._photo_crop: Any = None
        self._events = 0
        self.clock = time.time
        """The cloud's clock for capture-time checks and "last seen" (tests set a fixed one)."""
        self._featurizer_lock = threading.Lock()
        log_event(
            self.log,
            "search_service_loaded",
            model_id=default.catalog.model_id,
            model_ids=self.catalogs.model_ids(),
            items=len(default.catalog.ids),
            rows=default.catalog.index.count,
            catalog_views=default.catalog.views.describe(),
            index=default.catalog.manifest.index.kind,
            publisher=self.publisher.name,
            load_ms=round((time.perf_counter() - started) * 1000, 1),
        )

    @property
    def catalog(self) -> Catalog:
        """The newest index (single-model views: /api/health, tools); messages use :meth:`index_for`."""
        return self.catalogs.get(self.catalogs.newest()).catalog

    @property
    def metadata(self) -> MetadataStore:
        return self.catalogs.get(self.catalogs.newest()).metadata

    def index_for(self, model_id: str) -> LoadedCatalog:
        """The loaded index of ``model_id``; :class:`Rejected` (``no_index_for_model``) when there is none."""
        try:
            return self.catalogs.get(model_id)
        except NoIndexForModel as exc:
            raise Rejected("no_index_for_model", str(exc) + self._settings_hint()) from None

    def _settings_hint(self) -> str:
        # A device sends only its model id; naming the index's settings tells the operator what to export.
        # From loaded indexes only: a flood of unknown ids must not cost a manifest read each.
        loaded = self.catalogs.loaded_ids()
        if len(loaded) != 1 or len(self.catalogs.model_ids()) != 1:
            return ""
        retrieval = self.catalogs.get(loaded[0]).catalog.manifest.retrieval
        if not retrieval:
            return ""
        return (
            f"; the index expects pooling {retrieval.get('pooling')!r}, query_regions {retrieval.get('query_regions')}"
            " (a model exported with other settings has another id)"
        )

    # --- k-NN + metadata join, shared by device messages and photo search ----------------------------
    def find(
        self, vectors: np.ndarray, k: int | None = None, entry: LoadedCatalog | None = None
    ) -> list[dict[str, Any]]:
        """Top-k matches of one frame in ``entry`` (default: the newest index), metadata joined. ``vectors`` is the
        frame's vector ``[D]`` or its region vectors ``[R, D]``; each item keeps its best (region, view) score."""
        k = self.settings.top_k if k is None else k
        entry = entry or self.catalogs.get(self.catalogs.newest())
        catalog = entry.catalog
        item_scores, positions = search_items(
            catalog.index, catalog.owners, catalog.views.count, vectors, k, catalog.head
        )
        scores, items = item_scores[None], positions[None]
        threshold = self.min_score_for(catalog)
        hits = [
            (catalog.ids[int(p)], float(s))
            for s, p in zip(scores[0], items[0], strict=True)
            if p >= 0 and s >= threshold
        ]
        records = self._metadata_for([item_id for item_id, _ in hits], entry)
        matches = []
        for item_id, score in hits:
            match: dict[str, Any] = {"id": item_id, "score": round(score, 5)}
            record = records.get(item_id)
            fields = self._match_fields(record) if record is not None else None
            if fields is not None:
                match = {**fields, **match}
            else:
                # A store that disagrees with the index is a deployment error; show the id, not wrong facts.
                self.counters.inc("metadata_missing")
                match.update(title="", image_url="")
            matches.append(match)
        return matches

    def min_score_for(self, catalog: Catalog) -> float:
        """The threshold for ``catalog``'s scores: a projection head changes their scale (``min_score_adapted``)."""
        if catalog.head is not None and self.settings.min_score_adapted is not None:
            return self.settings.min_score_adapted
        return self.settings.min_score

    def _match_fields(self, record: Any) -> dict[str, Any] | None:
        """The record's fields for a match, or None when it cannot be joined (a model with no index here, or
        values JSON cannot carry: a store written by anything but our indexer may hold NaN).

        Any live model's record joins: an item's metadata does not depend on the model, and one DynamoDB table
        (keyed by item id) holds the record the latest ``load-metadata`` wrote, whichever index it came with."""
        if record.model_id not in self.catalogs.model_ids():
            return None
        fields: dict[str, Any] = record.as_match_fields()
        try:
            return bounded_json.check(fields, what=f"metadata of {record.id[:80]!r}")  # type: ignore[no-any-return]
        except Rejected as exc:
            self.counters.inc("metadata_invalid")
            log_event(self.log, "metadata_invalid", logging.WARNING, item_id=record.id[:200], error=str(exc))
            return None

    def clear_metadata_cache(self) -> None:
        """Forget cached metadata of every loaded index (after the store was rewritten under a running service)."""
        for model_id in self.catalogs.loaded_ids():
            self.catalogs.get(model_id).metadata_cache.clear()

    def _metadata_for(self, ids: list[str], entry: LoadedCatalog) -> dict[str, Any]:
        # A catalog version's metadata does not change while it is loaded, so hits are cached per index and
        # container (bounded); a DynamoDB BatchGetItem per event would cost more than the search itself.
        cache = entry.metadata_cache
        missing = [item_id for item_id in ids if item_id not in cache]
        if missing:
            fetched = entry.metadata.get_many(missing)
            if len(cache) + len(fetched) > METADATA_CACHE_ITEMS:
                cache.clear()
            cache.update(fetched)
        return {item_id: cache[item_id] for item_id in ids if item_id in cache}

    # --- device messages (IoT rule → Lambda, or the local rule bridge) -------------------------------
    def handle_feature_event(self, event: Any) -> dict[str, Any]:
        """The IoT rule event: the device's JSON payload plus ``topic_device`` (topic(2))."""
        self._tick()
        try:
            if not isinstance(event, dict):
                raise Rejected("not_object", f"event must be a JSON object, got {type(event).__name__}")
            topic_device = event.get("topic_device")
            if not is_thing_name(topic_device):
                raise Rejected("bad_topic", "event lacks a valid 'topic_device' (the IoT rule must select topic(2))")
            body = bounded_json.check(
                {key: value for key, value in event.items() if key not in RULE_KEYS}, what="event"
            )
            size = len(json.dumps(body, separators=(",", ":")))
            if size > MAX_PAYLOAD_BYTES:
                raise Rejected("oversize", f"event is {size} bytes, over the {MAX_PAYLOAD_BYTES}-byte limit")
            return self._handle(body, topic_device)
        except Rejected as exc:
            return self._reject(exc, event if isinstance(event, dict) else {})

    def handle_feature_payload(self, topic: str, payload: bytes) -> dict[str, Any]:
        """Raw MQTT message (local bridge): same checks, on the bytes as they arrived."""
        self._tick()
        try:
            device_id, _ = parse_topic(topic, ("features",))
            return self._handle(payload, device_id)
        except Rejected as exc:
            return self._reject(exc, {"topic_device": topic})

    def _handle(self, body: dict[str, Any] | bytes, topic_device: str) -> dict[str, Any]:
        started = time.perf_counter()
        message = decode(body)
        if message.device_id != topic_device:
            raise Rejected(
                "device_mismatch",
                f"device_id {message.device_id!r} differs from the topic's {topic_device!r}: refused as spoofed",
            )
        entry = self.index_for(message.model_id)
        if message.dim != entry.catalog.dim:
            raise Rejected("wrong_dim", f"vector has {message.dim} dims, the index {entry.catalog.dim}")
        self._check_capture_time(message.ts)
        matches = self.find(message.vectors, entry=entry)
        searched_at = time.time()
        record: dict[str, Any] = {
            "v": RECORD_VERSION,
            "device_id": message.device_id,
            "seq": message.seq,
            "ts": message.ts,
            "searched_at": round(searched_at, 6),
            "model_id": message.model_id,
            "matches": matches,
        }
        if entry.catalog.head is not None:
            record["head"] = entry.catalog.head.sha256[:12]  # which adapted index scored it (threshold, reloads)
        timing = dict(message.timing_ms)
        timing["search"] = round((time.perf_counter() - started) * 1000, 3)
        record["timing_ms"] = timing
        record = self._fit(record)
        try:
            stored = self.matches.push(record)
        except MatchStoreUnavailable as exc:
            self.counters.inc("failed")
            log_event(
                self.log, "feature_failed", logging.ERROR, device_id=message.device_id, seq=message.seq, error=str(exc)
            )
            raise
        if not stored:
            self.counters.inc("duplicate")
            log_event(self.log, "feature_duplicate", device_id=message.device_id, seq=message.seq)
            return {"status": "duplicate", "device_id": message.device_id, "seq": message.seq}
        self._publish(record)
        self.counters.inc("accepted")
        return {
            "status": "accepted",
            "device_id": message.device_id,
            "seq": message.seq,
            "matches": len(matches),
            "top": matches[0]["id"] if matches else None,
        }

    def _check_capture_time(self, ts: float) -> None:
        """A capture time the cloud can use: not ahead of its clock by more than :data:`MAX_CLOCK_AHEAD_S`, and
        not older than the idempotency window (an older message could not be told from a replay; a spool or
        a device queue replays within it)."""
        now = self.clock()
        if now - self.settings.seen_ttl_s <= ts <= now + MAX_CLOCK_AHEAD_S:
            return
        ahead = ts > now
        raise Rejected(
            "ts_out_of_range",
            f"capture time {ts:.3f} is {abs(ts - now):,.0f} s {'ahead of' if ahead else 'behind'} the cloud's clock"
            f" (allowed: {MAX_CLOCK_AHEAD_S} s ahead, {self.settings.seen_ttl_s} s behind): set the device clock (NTP)",
        )

    def _fit(self, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` within :data:`MAX_RECORD_BYTES` (it is published on MQTT, where IoT Core's 128 KB limit
        holds): over it, matches keep only id, score, a short title and the image URL, and the last matches go
        until it fits. ``trimmed`` says so; the catalog indexer's row budget makes this rare."""
        if _size(record) <= MAX_RECORD_BYTES:
            return record
        slim = [
            {
                "id": match["id"],
                "score": match["score"],
                "title": str(match.get("title") or "")[:200],
                "image_url": url if isinstance(url := match.get("image_url"), str) and len(url) <= 2048 else "",
            }
            for match in record["matches"]
        ]
        fitted = {**record, "matches": slim, "trimmed": True}
        while slim and _size(fitted) > MAX_RECORD_BYTES:
            slim.pop()
        self.counters.inc("record_trimmed")
        log_event(
            self.log,
            "record_trimmed",
            logging.WARNING,
            device_id=record["device_id"],
            seq=record["seq"],
            kept=len(slim),
        )
        return fitted

    def _tick(self) -> None:
        # One counters line every COUNTERS_EVERY events: accepted/rejected/failed trends without a log per event.
        self._events += 1
        if self._events % COUNTERS_EVERY == 0:
            log_event(self.log, "search_counters", events=self._events, **self.counters.snapshot())

    def _publish(self, record: dict[str, Any]) -> None:
        # The record is already durable in Redis (the web app polls it); a failed notification is
        # counted and logged, not retried, because a retry would be deduplicated anyway.
        try:
            self.publisher.publish(
                matches_topic(record["device_id"]), json.dumps(record, separators=(",", ":")).encode("utf-8")
            )
        except MatchPublishError as exc:
            self.counters.inc("publish_failed")
            log_event(self.log, "publish_failed", logging.WARNING, device_id=record["device_id"], error=str(exc))

    def _reject(self, exc: Rejected, event: dict[str, Any]) -> dict[str, Any]:
        reason = exc.reason
        self.counters.inc("rejected")
        self.counters.inc(f"rejected.{reason}")
        device = event.get("topic_device") if isinstance(event.get("topic_device"), str) else None
        log_event(
            self.log,
            "feature_rejected",
            logging.WARNING,
            reason=reason,
            message=str(exc)[:300],
            topic_device=str(device)[:200] if device else None,
            seq=event.get("seq") if isinstance(event.get("seq"), int) else None,
        )
        if is_thing_name(device):
            self._note_rejection(device, reason, str(exc), event.get("seq"))
        return {"status": "rejected", "reason": reason, "message": str(exc)}

    def _note_rejection(self, device_id: str, reason: str, message: str, seq: Any) -> None:
        """Tell the web app why this camera's messages are refused; a failed note never fails the event
        (a retry of a refused message would be refused again)."""
        try:
            self.notes.note_rejection(device_id, reason, message, seq if isinstance(seq, int) else None)
        except MatchStoreUnavailable as exc:
            self.counters.inc("rejection_note_failed")
            log_event(self.log, "rejection_note_failed", logging.WARNING, device_id=device_id, error=str(exc))

    # --- device status (IoT rule on visualsearch/+/status) -------------------------------------------
    def handle_status_event(self, event: Any) -> dict[str, Any]:
        try:
            if not isinstance(event, dict):
                raise Rejected("not_object", f"status must be a JSON object, got {type(event).__name__}")
            topic_device = event.get("topic_device")
            if not is_thing_name(topic_device):
                raise Rejected("bad_topic", "status event lacks a valid 'topic_device'")
            body = parse_status({key: value for key, value in event.items() if key not in RULE_KEYS})
            if body["device_id"] != topic_device:
                raise Rejected(
                    "device_mismatch", f"status device_id {str(body['device_id'])[:80]!r} differs from the topic's"
                )
            text = encode_status(body).decode("utf-8")
        except Rejected as exc:
            self.counters.inc(f"status_rejected.{exc.reason}")
            log_event(self.log, "status_rejected", logging.WARNING, reason=exc.reason, message=str(exc)[:300])
            if isinstance(event, dict) and is_thing_name(event.get("topic_device")):
                self._note_rejection(event["topic_device"], exc.reason, str(exc), None)
            return {"status": "rejected", "reason": exc.reason, "message": str(exc)}
        self.matches.put_status(topic_device, text, self.clock())
        self.counters.inc("status")
        return {"status": "accepted", "device_id": topic_device}

    # --- query thumbnails (IoT rule on visualsearch/+/thumbnail) -------------------------------------
    def handle_thumbnail_event(self, event: Any) -> dict[str, Any]:
        """Keep the newest thumbnail per device for the web app; a bad one is refused and counted."""
        try:
            if not isinstance(event, dict) or not is_thing_name(event.get("topic_device")):
                raise Rejected("bad_topic", "thumbnail event lacks a valid 'topic_device'")
            thumbnail = decode_thumbnail({key: value for key, value in event.items() if key not in RULE_KEYS})
            if thumbnail.device_id != event["topic_device"]:
                raise Rejected("device_mismatch", "thumbnail device_id differs from the topic's: refused as spoofed")
        except Rejected as exc:
            self.counters.inc(f"thumbnail_rejected.{exc.reason}")
            log_event(self.log, "thumbnail_rejected", logging.WARNING, reason=exc.reason, message=str(exc)[:300])
            return {"status": "rejected", "reason": exc.reason, "message": str(exc)}
        self.notes.put_thumbnail(thumbnail.device_id, thumbnail.seq, thumbnail.ts, thumbnail.jpeg)
        self.counters.inc("thumbnail")
        return {"status": "accepted", "device_id": thumbnail.device_id, "seq": thumbnail.seq}

    # --- photo search (API "search by photo", CLI search-image) --------------------------------------
    def featurizer(self) -> Any:
        with self._featurizer_lock:
            if self._featurizer is None:
                if not self.settings.photo_model:
                    raise PhotoModelUnavailable("photo search needs VS_PHOTO_MODEL (the catalog's ONNX model)")
                from cloud_lambda.catalog.sources import local_model
                from model.featurizer import Featurizer
                from model.retrieval.settings import SettingsMismatch, check_compatible, effective_crop

                featurizer = Featurizer(local_model(self.settings.photo_model))
                try:
                    # The photo model picks its index among those under the root, like a camera's message.
                    entry = self.catalogs.get(featurizer.model_id)
                except NoIndexForModel as exc:
                    raise PhotoModelUnavailable(f"VS_PHOTO_MODEL {self.settings.photo_model}: {exc}") from exc
                try:
                    check_compatible(featurizer.sidecar, entry.catalog.model_id, entry.catalog.manifest.retrieval)
                except SettingsMismatch as exc:
                    raise PhotoModelUnavailable(f"VS_PHOTO_MODEL {self.settings.photo_model}: {exc}") from exc
                # The same crop a device running this model applies to its frames (whole photo where it is blank).
                self._photo_crop = effective_crop(featurizer.sidecar, None)
                self._featurizer = featurizer
            return self._featurizer

    def search_photo(self, data: bytes, k: int | None = None) -> dict[str, Any]:
        """Validate (catalog rules) → decode → prepare → featurize → k-NN. Raises ImageRejected."""
        from model.image_rules import decode as decode_image

        started = time.perf_counter()
        image, _ = decode_image(data)
        decoded = time.perf_counter()
        featurizer = self.featurizer()
        # Every region vector of the frame, as a device running this model would send them.
        vector = featurizer.featurize_regions(self._photo_crop.prepare(image, featurizer.input_size)[None])[0]
        featurized = time.perf_counter()
        try:
            entry = self.catalogs.get(featurizer.model_id)
        except NoIndexForModel as exc:  # retired since the featurizer was loaded
            raise PhotoModelUnavailable(f"VS_PHOTO_MODEL {self.settings.photo_model}: {exc}") from exc
        matches = self.find(vector, k, entry)
        done = time.perf_counter()
        self.counters.inc("photo_search")
        return {
            "model_id": featurizer.model_id,
            "matches": matches,
            "timing_ms": {
                "decode": round((decoded - started) * 1000, 3),
                "featurize": round((featurized - decoded) * 1000, 3),
                "search": round((done - featurized) * 1000, 3),
            },
        }
