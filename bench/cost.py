"""The capacity and cost model of docs/scale.md: 10 to 10,000 cameras at 1–5 messages/s.

Arithmetic only (runs in a second): the per-message inputs are **measured** by ``python -m bench capacity``
(it writes ``.cache/bench/capacity.json``; without that file the figures recorded in docs/scale.md from its
run on 2026-11-30 are used, and the output says so), the prices are **cited** in :data:`PRICES` (us-east-1,
with the page and the date each was read), and the few figures that can only be measured in AWS are named
**assumptions** in :data:`ASSUMED` (no AWS account here).

``python -m bench cost`` prints: the monthly load and bill per fleet size, the cost per million frames next
to the original design (a SageMaker k-NN endpoint running 24/7), and each limit's headroom (which breaks first).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from bench.table import print_table

MEASURED_FILE = Path(__file__).resolve().parent.parent / ".cache" / "bench" / "capacity.json"
SECONDS_PER_MONTH = 30 * 24 * 3600
FLEETS = [(10, 1.0), (100, 1.0), (1_000, 1.0), (1_000, 5.0), (10_000, 1.0), (10_000, 5.0)]
"""(cameras, messages/s per camera): a camera sends only while something is held in front of it, so 1 msg/s is
a busy average; 5 msg/s is the edge loop's default cap all day long (an upper bound)."""


@dataclass(frozen=True)
class Price:
    value: float
    unit: str
    source: str
    read: str
    """When and how the figure was read: a date, and "stated" when the page itself shows the number."""


PRICES: dict[str, Price] = {
    "iot_message": Price(
        1.00e-6,
        "per message (5 KB unit), first 1B/month",
        "https://aws.amazon.com/iot-core/pricing/ (AWS's worked example quotes $1.00/1,000,000 messages)",
        "2026-11-30, stated in AWS's pricing example",
    ),
    "iot_connect_minute": Price(
        0.08e-6,
        "per connection-minute",
        "https://aws.amazon.com/iot-core/pricing/ ($0.08/1,000,000 minutes of connection, AWS's worked example)",
        "2026-11-30, stated in AWS's pricing example",
    ),
    "iot_rule": Price(
        0.15e-6,
        "per rule triggered (5 KB unit)",
        "https://aws.amazon.com/iot-core/pricing/",
        "NOT re-read: the stored copy renders the rules-engine table as template tokens",
    ),
    "iot_action": Price(
        0.15e-6,
        "per action executed",
        "https://aws.amazon.com/iot-core/pricing/",
        "NOT re-read: the stored copy renders the rules-engine table as template tokens",
    ),
    "lambda_request": Price(
        0.20e-6,
        "per invocation",
        "https://aws.amazon.com/lambda/pricing/ ($0.20 per million requests)",
        "2026-11-30, stated on the page (Managed Instances section; same request price)",
    ),
    "lambda_gb_s": Price(
        1.66667e-5,
        "per GB-second, x86_64, first 6B GB-s/month",
        "https://aws.amazon.com/lambda/pricing/ (the table itself is client-rendered; the figure is from "
        "artillery's prices.js and the cloudchipr us-east-1 guide quoting it)",
        "2026-11-30, third-party transcriptions",
    ),
    "redis_ecpu": Price(
        0.0034e-6,
        "per ECPU, ElastiCache Serverless (Redis OSS)",
        "https://aws.amazon.com/blogs/database/unlock-on-demand-cost-optimized-performance-with-amazon-elasticache-serverless/",
        "2026-11-30, stated in the AWS Database Blog",
    ),
    "redis_gb_hour": Price(
        0.125,
        "per GB-hour stored, ElastiCache Serverless (Redis OSS), 1 GB minimum",
        "https://aws.amazon.com/blogs/database/unlock-on-demand-cost-optimized-performance-with-amazon-elasticache-serverless/",
        "2026-11-30, stated in the AWS Database Blog",
    ),
    "sagemaker_m5_xlarge_hour": Price(
        0.269,
        "per hour, ml.m5.xlarge real-time endpoint instance",
        "https://zircon.tech/blog/the-real-cost-of-running-ai-models-on-aws-sagemaker-inference-deep-dive",
        '2026-11-30, third-party ("us-east-1 as of October 2025")',
    ),
    "opensearch_serverless_month": Price(
        350.0,
        "per month, smallest redundant OpenSearch Serverless vector collection",
        'https://cloudburn.io/blog/amazon-opensearch-pricing ("roughly $350/month", us-east-1, March 2026)',
        "2026-11-30, third-party",
    ),
}


@dataclass(frozen=True)
class Measured:
    """Per feature message, from ``python -m bench capacity`` (one message = one camera frame sent)."""

    handler_cpu_ms: float
    """SearchService.handle_feature_event: decode, k-NN, metadata join, Redis push; 1M items, the large default."""
    handler_wall_ms: float
    redis_cpu_ms: float
    redis_commands: float
    marker_bytes: float
    record_bytes: float
    list_bytes: float
    feature_bytes: float
    feature_units: int
    match_bytes: float
    match_units: int
    knn_cpu_ms: float = float("nan")
    """The k-NN search alone (the part a SageMaker k-NN endpoint would do instead)."""
    source: str = "python -m bench capacity"


RECORDED = Measured(
    handler_cpu_ms=float("nan"),
    handler_wall_ms=float("nan"),
    redis_cpu_ms=float("nan"),
    redis_commands=float("nan"),
    marker_bytes=float("nan"),
    record_bytes=float("nan"),
    list_bytes=float("nan"),
    feature_bytes=float("nan"),
    feature_units=1,
    match_bytes=float("nan"),
    match_units=1,
    source="docs/scale.md (recorded from `python -m bench capacity`, 2026-11-30)",
)

ASSUMED = {
    "lambda_memory_gb": 2.0,
    "network_wait_ms": 15.0,
    "redis_ecpu_per_message": 6.0,
    "sagemaker_min_instances": 1,
    "sagemaker_vcpus": 4,
    "sagemaker_request_cpu_ms": 2.0,
    "sagemaker_utilization": 0.6,
    "sagemaker_call_ms": 10.0,
    "original_lambda_gb": 0.5,
}
"""Figures only AWS can measure, used as stated: the template's 2 GB function; ``network_wait_ms`` — the
handler's waits on the network per message that the local bench does not have (one ElastiCache round trip,
the ``iot-data`` Publish call, a DynamoDB metadata read when not cached); ECPUs per message (the push script
moves ~1 KB in and runs 7 commands); the original
design's endpoint — ml.m5.xlarge instances (4 vCPUs) run at 60 % at most, each request costing the measured k-NN
CPU plus 2 ms of serving (HTTP, JSON of 1280 floats), at least one instance, no redundancy — and the Lambda's
wait on its HTTPS call (its function holds no index: 0.5 GB)."""

LIMITS = {
    "IoT Core publish per connection (msg/s, hard)": (
        100.0,
        "https://docs.aws.amazon.com/general/latest/gr/iot-core.html#message-broker-limits",
    ),
    "Lambda concurrent executions (account default)": (
        1000.0,
        "https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html",
    ),
    "Lambda requests/s (10 × concurrency quota; synchronous calls)": (
        10_000.0,
        "https://docs.aws.amazon.com/lambda/latest/dg/lambda-concurrency.html",
    ),
}


TEMPLATE_REDIS_GB = 1.37 * 2**30 / 1e9 * 0.75
"""The template's default RedisNodeType, cache.t4g.small: 1.37 GiB (https://dragonflydb.io/finops/elasticache,
third-party table of ElastiCache node types), less the 25 % ElastiCache reserves by default
(https://cloudburn.io/blog/amazon-elasticache-pricing)."""


def load_measured() -> Measured:
    if not MEASURED_FILE.exists():
        return RECORDED
    data: dict[str, Any] = json.loads(MEASURED_FILE.read_text())
    known = {f.name for f in fields(Measured)}
    return Measured(
        **{k: v for k, v in data.items() if k in known}, source=f"{MEASURED_FILE} ({data.get('when', '?')})"
    )


# --- the model ---------------------------------------------------------------------------------------------
def lambda_duration_ms(m: Measured) -> float:
    """Billed ms per invocation: the handler's measured CPU time (its wall time here is mostly waiting for the
    shared cores; a 2 GB function has more than one vCPU to itself) plus the assumed network waits, rounded up
    to 1 ms."""
    return float(math.ceil(m.handler_cpu_ms + ASSUMED["network_wait_ms"]))


def seen_ttl_s() -> int:
    """How long an idempotency marker lives by default (``VS_SEEN_TTL_S``): Redis holds rate × this many."""
    from cloud_lambda.settings import CloudSettings

    return int(CloudSettings.model_fields["seen_ttl_s"].default)


def monthly(
    cameras: int, rate: float, m: Measured, basic_ingest: bool, marker_ttl_s: float | None = None
) -> dict[str, float]:
    """One fleet's monthly quantities and dollars, by component."""
    per_s = cameras * rate
    msgs = per_s * SECONDS_PER_MONTH
    duration_s = lambda_duration_ms(m) / 1000
    # In: the feature message (skips the broker with Basic Ingest). Out: the Lambda's Publish of the match record
    # (the edge component does not subscribe to it; each subscriber, e.g. a display, would add one delivery).
    iot_msgs = (0 if basic_ingest else m.feature_units) * msgs + m.match_units * msgs
    markers = per_s * (seen_ttl_s() if marker_ttl_s is None else marker_ttl_s)
    redis_gb = (markers * m.marker_bytes + cameras * m.list_bytes) / 1e9
    dollars = {
        "IoT connectivity": cameras * SECONDS_PER_MONTH / 60 * PRICES["iot_connect_minute"].value,
        "IoT messaging": iot_msgs * PRICES["iot_message"].value,
        "IoT rules + actions": msgs * m.feature_units * PRICES["iot_rule"].value + msgs * PRICES["iot_action"].value,
        "Lambda requests": msgs * PRICES["lambda_request"].value,
        "Lambda duration": msgs * duration_s * ASSUMED["lambda_memory_gb"] * PRICES["lambda_gb_s"].value,
        "Redis (serverless)": msgs * ASSUMED["redis_ecpu_per_message"] * PRICES["redis_ecpu"].value
        + max(1.0, redis_gb) * 720 * PRICES["redis_gb_hour"].value,
    }
    return {
        "msg_per_s": per_s,
        "messages": msgs,
        "concurrency": per_s * duration_s,
        "redis_ops_per_s": per_s * m.redis_commands,
        "redis_cpu_share": per_s * m.redis_cpu_ms / 1000,
        "redis_gb": redis_gb,
        "ingress_gb": msgs * m.feature_bytes / 1e9,
        "egress_gb": msgs * m.match_bytes / 1e9,
        **{f"$ {k}": v for k, v in dollars.items()},
        "total": sum(dollars.values()),
    }


def sagemaker_instances(per_s: float, m: Measured) -> int:
    cpu_s = per_s * (m.knn_cpu_ms + ASSUMED["sagemaker_request_cpu_ms"]) / 1000
    capacity = ASSUMED["sagemaker_vcpus"] * ASSUMED["sagemaker_utilization"]
    return max(int(ASSUMED["sagemaker_min_instances"]), math.ceil(cpu_s / capacity))


def sagemaker_monthly(cameras: int, rate: float, m: Measured) -> float:
    """The original design: the same IoT (broker), rule, Lambda and Redis path, but the Lambda holds no index
    (0.5 GB) and waits on a SageMaker k-NN endpoint running 24/7 instead of searching in-process."""
    ours = monthly(cameras, rate, m, basic_ingest=False)
    endpoint = sagemaker_instances(cameras * rate, m) * 720 * PRICES["sagemaker_m5_xlarge_hour"].value
    duration_s = (lambda_duration_ms(m) - m.knn_cpu_ms + ASSUMED["sagemaker_call_ms"]) / 1000
    function = ours["messages"] * duration_s * ASSUMED["original_lambda_gb"] * PRICES["lambda_gb_s"].value
    return ours["total"] - ours["$ Lambda duration"] + function + endpoint


# --- the tables --------------------------------------------------------------------------------------------
def fleet_rows(m: Measured, basic_ingest: bool) -> list[list[Any]]:
    rows = []
    for cameras, rate in FLEETS:
        f = monthly(cameras, rate, m, basic_ingest)
        per_million = f["total"] / f["messages"] * 1e6
        rows.append(
            [
                f"{cameras:,} × {rate:g}/s",
                f["msg_per_s"],
                f["messages"] / 1e6,
                f["concurrency"],
                f["redis_ops_per_s"],
                f["redis_cpu_share"],
                f["redis_gb"],
                f["ingress_gb"],
                *(f[f"$ {k}"] for k in _COMPONENTS),
                f["total"],
                per_million,
            ]
        )
    return rows


_COMPONENTS = [
    "IoT connectivity",
    "IoT messaging",
    "IoT rules + actions",
    "Lambda requests",
    "Lambda duration",
    "Redis (serverless)",
]


def comparison_rows(m: Measured) -> list[list[Any]]:
    rows = []
    for cameras, rate in FLEETS:
        ours = monthly(cameras, rate, m, basic_ingest=True)
        broker = monthly(cameras, rate, m, basic_ingest=False)
        original = sagemaker_monthly(cameras, rate, m)
        per = 1e6 / ours["messages"]
        rows.append(
            [
                f"{cameras:,} × {rate:g}/s",
                ours["total"] * per,
                broker["total"] * per,
                original * per,
                sagemaker_instances(cameras * rate, m),
                original / broker["total"],
            ]
        )
    return rows


def redis_memory_rows(m: Measured) -> list[list[Any]]:
    rows = []
    for cameras, rate in FLEETS:
        default = monthly(cameras, rate, m, basic_ingest=True)
        hour = monthly(cameras, rate, m, basic_ingest=True, marker_ttl_s=3600)
        rows.append(
            [
                f"{cameras:,} × {rate:g}/s",
                default["redis_gb"],
                default["$ Redis (serverless)"],
                hour["redis_gb"],
                hour["$ Redis (serverless)"],
            ]
        )
    return rows


def limit_rows(m: Measured) -> list[list[Any]]:
    duration_s = lambda_duration_ms(m) / 1000
    rows = []
    for cameras, rate in FLEETS:
        per_s = cameras * rate
        rows.append(
            [
                f"{cameras:,} × {rate:g}/s",
                per_s * duration_s / LIMITS["Lambda concurrent executions (account default)"][0],
                per_s / LIMITS["Lambda requests/s (10 × concurrency quota; synchronous calls)"][0],
                per_s * m.redis_cpu_ms / 1000,
                monthly(cameras, rate, m, basic_ingest=True)["redis_gb"] / TEMPLATE_REDIS_GB,
                rate / LIMITS["IoT Core publish per connection (msg/s, hard)"][0],
            ]
        )
    return rows


def run(quick: bool) -> None:
    m = load_measured()
    if math.isnan(m.handler_cpu_ms):
        raise SystemExit(
            "no measured inputs: run `python -m bench capacity` first (it writes .cache/bench/capacity.json)"
        )
    print(
        f"\nInputs: {m.source}; Lambda billed {lambda_duration_ms(m):.0f} ms/message "
        f"(measured CPU {m.handler_cpu_ms:.2f} ms + assumed {ASSUMED['network_wait_ms']:.0f} ms network waits)"
    )
    headers = [
        "fleet",
        "msg/s",
        "M msgs/month",
        "Lambda concurrency",
        "Redis cmds/s",
        "Redis cores",
        "Redis GB",
        "in GB/month",
    ]
    for basic in (True, False):
        print_table(
            f"Monthly load and bill, us-east-1, {'Basic Ingest ($aws/rules/...)' if basic else 'through the message broker'}",
            [*headers, *(f"$ {c}" for c in _COMPONENTS), "$ total", "$ per M frames"],
            fleet_rows(m, basic),
            "Redis cores: redis-server CPU-seconds per second at this rate (measured CPU/message × msg/s).",
        )
    print_table(
        "Cost per million frames: this design vs the original (SageMaker k-NN endpoint 24/7)",
        ["fleet", "$ Basic Ingest", "$ broker", "$ SageMaker endpoint", "endpoint instances", "original / broker"],
        comparison_rows(m),
        "Original: ml.m5.xlarge instances all month (enough for the rate, see ASSUMED) + the same IoT (broker) /"
        f" Lambda / Redis path, the Lambda waiting {ASSUMED['sagemaker_call_ms']:.0f} ms on the endpoint instead of"
        " searching in-process.",
    )
    print_table(
        "Redis memory: idempotency markers (rate × VS_SEEN_TTL_S × bytes per marker) + one list per camera",
        ["fleet", f"GB (TTL {seen_ttl_s():,} s, default)", "$/month", "GB (TTL 3,600 s)", "$/month"],
        redis_memory_rows(m),
        f"{m.marker_bytes:.0f} B per marker, {m.list_bytes:,.0f} B per camera's list at its cap (measured).",
    )
    print_table(
        "Headroom: share of each limit used (≥ 1.0 breaks)",
        [
            "fleet",
            "Lambda concurrency / 1,000",
            "Lambda req/s / 10,000 (sync only)",
            "Redis: cores busy",
            "template Redis memory (cache.t4g.small)",
            "IoT msg/s per connection / 100",
        ],
        limit_rows(m),
        "Limits: " + "; ".join(f"{name} = {value:,.0f} ({url})" for name, (value, url) in LIMITS.items()),
    )
    print("\nPrices (us-east-1):")
    for name, price in PRICES.items():
        print(f"  {name}: {price.value:g} {price.unit} — {price.source} [{price.read}]")
