"""The cluster spec (`bramble.toml`): models, loading, and validation errors with locations.

- `models`: every key, its type, default and single-value checks (the one source of defaults);
- `locate`: which line of the TOML text holds a key;
- `checks`: what is wrong with a spec, as key paths with fixes;
- `load`: finding, reading and parsing the spec and its secrets.
"""

from bramble.spec.load import (
    SpecErrors,
    check_secrets,
    find_spec_path,
    load_secrets,
    load_spec,
    parse_secrets,
    parse_spec,
    read_spec_text,
    secrets_mode_ok,
    secrets_path,
)
from bramble.spec.models import (
    BUILTIN_ALERTS,
    MAX_HOST,
    MAX_INTERVAL,
    MAX_TELEMETRY_KEY,
    MAX_UNICAST,
    SECRETS_NAME,
    SPEC_NAME,
    SYSTEM_SPEC,
    AlertingSpec,
    AlertRuleSpec,
    DashboardSpec,
    EnrollSpec,
    HistorySpec,
    JobsSpec,
    MasterSpec,
    NetworkSpec,
    NodeSpec,
    Secrets,
    ShareSpec,
    SoftwareSpec,
    Spec,
    TelemetrySpec,
)

__all__ = [
    "BUILTIN_ALERTS",
    "MAX_HOST",
    "MAX_INTERVAL",
    "MAX_TELEMETRY_KEY",
    "MAX_UNICAST",
    "SECRETS_NAME",
    "SPEC_NAME",
    "SYSTEM_SPEC",
    "AlertRuleSpec",
    "AlertingSpec",
    "DashboardSpec",
    "EnrollSpec",
    "HistorySpec",
    "JobsSpec",
    "MasterSpec",
    "NetworkSpec",
    "NodeSpec",
    "Secrets",
    "ShareSpec",
    "SoftwareSpec",
    "Spec",
    "SpecErrors",
    "TelemetrySpec",
    "check_secrets",
    "find_spec_path",
    "load_secrets",
    "load_spec",
    "parse_secrets",
    "parse_spec",
    "read_spec_text",
    "secrets_mode_ok",
    "secrets_path",
]
