"""Which ports of a container are probed with HTTP(S), and how: its labels, then the rules.

Labels: dockping.http=PATH and dockping.https=PATH for every probed port,
dockping.http.PORT=PATH and dockping.https.PORT=PATH for one (probed even when not exposed),
dockping.http.status=200-399 and dockping.tls_verify=true. A bad value is explained in the
returned note and ignored, as the other labels are.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, replace

from dockping.http_check import HttpCheck, parse_path, parse_statuses
from dockping.settings import HttpRule

HTTP_LABEL = "dockping.http"
HTTPS_LABEL = "dockping.https"
STATUS_LABEL = "dockping.http.status"
TLS_VERIFY_LABEL = "dockping.tls_verify"
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


@dataclass(frozen=True)
class HttpPlan:
    """Per port, the protocol (http or https) and check; `default` for every other port."""

    default: tuple[str, HttpCheck] | None
    ports: dict[int, tuple[str, HttpCheck]]
    notes: tuple[str, ...] = ()

    def for_port(self, port: int) -> tuple[str, HttpCheck] | None:
        """The protocol and check of one port, or None for a bare TCP connect."""
        return self.ports.get(port, self.default)


def plan_of(labels: dict[str, str], image: str, rules: Sequence[HttpRule] = ()) -> HttpPlan:
    """Read the HTTP labels of a container, over the first rule matching its image."""
    notes: list[str] = []
    default: tuple[str, HttpCheck] | None = None
    ports: dict[int, tuple[str, HttpCheck]] = {}
    rule = next((r for r in rules if fnmatch.fnmatchcase(image, r.image)), None)
    if rule is not None:
        check = HttpCheck(rule.path, parse_statuses(rule.status), rule.tls_verify)
        scheme = "https" if rule.tls else "http"
        if rule.port:
            ports[rule.port] = (scheme, check)
        else:
            default = (scheme, check)
    # Labels override the rule: the all-ports ones first, then each port's; https after http,
    # so that it wins where both are given.
    if HTTP_LABEL in labels and HTTPS_LABEL in labels:
        notes.append(f"{HTTP_LABEL} and {HTTPS_LABEL} both given: {HTTPS_LABEL} is used")
    for scheme, label in (("http", HTTP_LABEL), ("https", HTTPS_LABEL)):
        if label in labels:
            try:
                default = (scheme, HttpCheck(parse_path(labels[label])))
            except ValueError as exc:
                notes.append(f"{label}: {exc}")
    for scheme, label in (("http", HTTP_LABEL), ("https", HTTPS_LABEL)):
        prefix = label + "."
        for key in sorted(k for k in labels if k.startswith(prefix) and k != STATUS_LABEL):
            suffix = key[len(prefix) :]
            if not suffix.isdigit() or not 1 <= int(suffix) <= 65535:
                notes.append(f"{key}: {suffix[:32]!r} is not a TCP port")
                continue
            try:
                ports[int(suffix)] = (scheme, HttpCheck(parse_path(labels[key])))
            except ValueError as exc:
                notes.append(f"{key}: {exc}")
                continue
            if scheme == "https" and f"{HTTP_LABEL}.{suffix}" in labels:
                notes.append(f"{HTTP_LABEL}.{suffix} and {key} both given: {key} is used")
    tuned: dict[str, object] = {}
    if STATUS_LABEL in labels:
        try:
            tuned["accept"] = parse_statuses(labels[STATUS_LABEL])
        except ValueError as exc:
            notes.append(f"{STATUS_LABEL}: {exc}")
    if TLS_VERIFY_LABEL in labels:
        value = labels[TLS_VERIFY_LABEL].strip().lower()
        if value in _TRUE or value in _FALSE:
            tuned["verify"] = value in _TRUE
        else:
            notes.append(
                f"{TLS_VERIFY_LABEL}: {labels[TLS_VERIFY_LABEL][:32]!r} is not true or false"
            )
    if tuned:
        default = None if default is None else _tune(default, tuned)
        ports = {port: _tune(plan, tuned) for port, plan in ports.items()}
    return HttpPlan(default, ports, tuple(notes))


def _tune(plan: tuple[str, HttpCheck], changes: dict[str, object]) -> tuple[str, HttpCheck]:
    return plan[0], replace(plan[1], **changes)  # type: ignore[arg-type]
