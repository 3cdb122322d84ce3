"""What the master's API and event stream send: typed values that pydantic validates, encodes
and describes in `/openapi.json`.

A node's view is a TypedDict rather than a model: the master builds one for every changed
node ten times a second (1,000 nodes: 1,000 a second, and 1,000 more for each snapshot), and a
dict costs a tenth of a pydantic model to build. The rest are frozen models. The event
stream's frames carry the same values as the JSON routes, so the dashboard, `bramble top` and
`bramble status` read one shape.
"""

from __future__ import annotations

from typing import Annotated, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict  # pydantic needs it, not typing's, before Python 3.12

from bramble.spec.models import Severity

Status = Literal["up", "stale", "down"]
ChangeKind = Literal[
    "new", "up", "stale", "down", "rebooted", "enrolled", "pending", "refused", "revoked"
]
"""Liveness changes (new .. rebooted) and enrollment decisions (enrolled .. revoked)."""
LIVENESS_KINDS = ("new", "up", "stale", "down", "rebooted")
AlertState = Literal["pending", "firing", "resolved"]
Point = tuple[float, float]
"""One point of a series: (bucket start, epoch seconds; the mean value in that bucket)."""


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class SampleView(TypedDict):
    """A node's latest sample as it sent it (the wire format's fields), stamped with its clock."""

    cpufreq: Annotated[int, Field(description="CPU frequency, MHz (0 when unknown)")]
    cputemp: Annotated[float, Field(description="CPU temperature, °C (0 when unknown)")]
    cpuusage: Annotated[float, Field(description="CPU busy fraction 0..1 over the last interval")]
    loadavg: Annotated[tuple[float, float, float], Field(description="1, 5 and 15 minute load")]
    meminfo: Annotated[dict[str, int], Field(description="/proc/meminfo fields, kB")]
    cores: Annotated[list[float], Field(description="per-core busy fraction 0..1")]
    disk: Annotated[dict[str, int], Field(description="root filesystem: total, used, free bytes")]
    net: Annotated[
        dict[str, tuple[int, int]], Field(description="bytes [in, out] per interface since boot")
    ]
    uptime: Annotated[float, Field(description="seconds since boot")]
    ts: Annotated[float, Field(description="the sender's clock when it sampled, epoch seconds")]
    model: Annotated[
        str | None, Field(description="the board model (device tree), null where it has none")
    ]
    throttled: Annotated[
        int | None,
        Field(
            description="the Raspberry Pi firmware's flags (get_throttled): bit 0 under-voltage, "
            "1 ARM frequency capped, 2 throttled, 3 soft temperature limit, now; bits 16-19 the "
            "same since boot. Null off a Raspberry Pi"
        ),
    ]
    swap: Annotated[
        tuple[int, int] | None,
        Field(description="pages swapped [in, out] since boot, null where unknown"),
    ]
    diskio: Annotated[
        tuple[int, int] | None,
        Field(
            description="bytes [read, written] since boot on the root filesystem's device, "
            "null where it has none (an overlay, a network root)"
        ),
    ]
    fs: Annotated[
        dict[str, tuple[int, int, int]],
        Field(description="real filesystems (at most 4) by mount point: [total, used, free] bytes"),
    ]


class Rates(TypedDict):
    """A node's rates, from its last two samples; those it does not report are left out."""

    net_rx: Annotated[float, Field(description="bytes/s received, all interfaces but loopback")]
    net_tx: Annotated[float, Field(description="bytes/s sent, all interfaces but loopback")]
    disk_read: NotRequired[
        Annotated[float, Field(description="bytes/s read from the root filesystem's device")]
    ]
    disk_write: NotRequired[
        Annotated[float, Field(description="bytes/s written to the root filesystem's device")]
    ]
    swap_in: NotRequired[Annotated[float, Field(description="pages/s swapped in")]]
    swap_out: NotRequired[Annotated[float, Field(description="pages/s swapped out")]]


class FilesystemView(TypedDict):
    """One real filesystem of a node, from its latest sample."""

    mount: Annotated[str, Field(description="mount point")]
    total: Annotated[int, Field(description="size, bytes")]
    used: Annotated[int, Field(description="bytes in use")]
    free: Annotated[int, Field(description="bytes free for unprivileged users")]
    used_percent: Annotated[float, Field(description="used, per cent of the size (0.1)")]


class ProcessView(TypedDict):
    """One of a node's top processes (by CPU or by memory)."""

    name: Annotated[str, Field(description="its name (comm, at most 15 characters)")]
    pid: int
    cpu: Annotated[
        float, Field(description="per cent of one core over the agent's last N intervals")
    ]
    rss: Annotated[int, Field(description="resident memory, bytes")]


class ProcessesView(TypedDict):
    """A node's latest process datagram: its 5 busiest and 5 largest processes."""

    ts: Annotated[
        float | None, Field(description="the node's clock when it read them; null: none yet")
    ]
    processes: list[ProcessView]


class NodeView(TypedDict):
    """One node as the master sees it: liveness, its latest sample and its metrics."""

    name: str
    address: Annotated[str, Field(description="the address its datagrams come from")]
    status: Status
    first_seen: Annotated[float, Field(description="epoch seconds, master's clock")]
    last_seen: Annotated[float, Field(description="epoch seconds, master's clock")]
    boot: Annotated[int, Field(description="the node's boot id (its boot time)")]
    seq: Annotated[int, Field(description="the last datagram's sequence number in this boot")]
    rebooted_at: Annotated[
        float | None, Field(description="when the master saw it reboot, if it did")
    ]
    interval: Annotated[float, Field(description="the node's send interval, seconds")]
    signed: Annotated[bool, Field(description="whether its datagrams are signed")]
    sample: SampleView | None
    rates: Rates
    metrics: Annotated[
        dict[str, float],
        Field(
            description="every metric of the registry read from the latest sample (memory "
            "used, network rates, ...): what history stores and /metrics exports, computed "
            "once here"
        ),
    ]
    filesystems: NotRequired[
        Annotated[
            list[FilesystemView],
            Field(description="its real filesystems (in `/api/nodes/{name}` only)"),
        ]
    ]


class Change(_View):
    """Something that happened to a node: it joined, went stale or down, came up, rebooted;
    or the master enrolled it, made it wait for approval, refused or revoked it."""

    ts: float = Field(description="epoch seconds, master's clock")
    node: str
    kind: ChangeKind
    message: str


class Stats(_View):
    """Telemetry datagrams accepted and rejected (by reason), and the acceptance rate."""

    accepted: int
    rejected: dict[str, int] = Field(description="rejected datagrams by reason")
    rate: float = Field(description="datagrams accepted per second, over about 10 s")
    nodes: int = Field(description="nodes in the table")
    started: float = Field(description="when the master started, epoch seconds")
    now: float = Field(description="the master's clock, epoch seconds")
    errors: dict[str, int] = Field(
        default={}, description="failures of the master's own parts so far (see /api/health)"
    )
    refused: dict[str, int] = Field(
        default={},
        description="HTTP requests refused by reason: host, body_too_large, body_stalled, "
        "header_timeout, stream_stalled, busy_events",
    )
    problems: list[str] = Field(
        default=[], description="what does not work now, one line each (empty when all does)"
    )
    history_flushed: float | None = Field(
        default=None,
        description="when history last wrote what it keeps in memory to disk, epoch seconds",
    )


class PartView(_View):
    """One part of the master: whether it works, and why not."""

    ok: bool
    detail: str = Field(description="why it does not work ('disk full', 'read-only', ...)")
    errors: int = Field(description="failures so far")
    since: float = Field(description="since when it works, or fails, epoch seconds")


class HealthView(_View):
    """What works in the master: the collector, the live view's loops, history, jobs."""

    ok: bool = Field(description="whether every part works")
    parts: dict[str, PartView]
    history_flushed: float | None = Field(
        default=None,
        description="when history last wrote the samples it keeps in memory to disk, epoch "
        "seconds (null before the first time): a power cut loses what came after",
    )
    history_flush_seconds: float | None = Field(
        default=None, description="how often history writes to disk (history.flush_seconds)"
    )
    history_bytes: int | None = Field(
        default=None, description="bytes history holds on disk, as of its last write"
    )
    history_max_bytes: int | None = Field(
        default=None, description="what it may hold (history.max_bytes): the oldest goes first"
    )


class AlertView(_View):
    """One alert: a rule whose condition holds (or held) on a node."""

    rule: str = Field(description="the rule's name (Alertmanager's `alertname`)")
    node: str
    severity: Severity
    state: AlertState = Field(description="pending (waiting for `for`), firing or resolved")
    condition: str = Field(description="what the rule tests: 'cputemp > 80'")
    value: float | None = Field(description="the metric's last value that held the condition")
    summary: str
    active_at: float = Field(description="when the condition began to hold, epoch seconds")
    fired_at: float | None = Field(description="when it began firing, if it did")
    resolved_at: float | None = Field(description="when it resolved, if it did")
    fingerprint: str = Field(description="identifies the alert (its rule and node)")
    silenced: bool = Field(default=False, description="whether a silence matches it")

    @property
    def labels(self) -> dict[str, str]:
        """Its labels, as Alertmanager and /metrics name them."""
        return {"alertname": self.rule, "node": self.node, "severity": self.severity}


class SilenceView(_View):
    """A silence: while active, the alerts it matches are not notified (and shown silenced)."""

    id: str
    rule: str = Field(description="the rules it silences: a name, or a pattern such as 'disk_*'")
    node: str = Field(description="the nodes it silences: a name, or a pattern such as 'node-*'")
    starts_at: float = Field(description="epoch seconds")
    ends_at: float = Field(description="epoch seconds")
    comment: str
    active: bool = Field(description="whether it silences now")


class Snapshot(_View):
    """The first event of the stream, and again after a viewer fell behind: everything."""

    nodes: list[NodeView]
    stats: Stats
    changes: list[Change] = Field(description="the newest changes, newest first")
    alerts: list[AlertView] = Field(
        default=[], description="alerts pending, firing or resolved lately (as /api/alerts)"
    )


class MetricInfo(_View):
    """One metric of the registry, as the dashboard names, labels and charts it."""

    name: str
    unit: str = Field(description="'%', '°C', 'kB', 'bytes/s', 'ratio' (0..1), '' ...")
    help: str
    cluster: Literal["sum", "mean", "max"] = Field(description="how the cluster combines nodes")
    stored: bool = Field(description="whether history keeps it (the history routes serve it)")
    absent_at_zero: bool = Field(description="whether 0 means the node does not report it")


class NodeSeries(_View):
    """Several metrics of one node over time (`metric` named several, separated by commas)."""

    node: str
    step: float = Field(description="seconds per point")
    series: dict[str, list[Point]]


class NodeMetric(_View):
    """One metric of one node over time."""

    node: str
    metric: str
    step: float = Field(description="seconds per point")
    points: list[Point]


class ClusterSeries(_View):
    """One metric over all nodes: each step's values combined as the metric registry says
    (the mean CPU, the total memory, ...)."""

    metric: str
    step: float = Field(description="seconds per point")
    points: list[Point]
