"""The HTTP labels and rules: paths, port suffixes and status lists, parsed or explained."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.http_labels import plan_of
from agent.targets import container_of
from dockping.http_check import HttpCheck, parse_path, parse_statuses
from dockping.settings import HttpRule, SettingsError, load

PATH_CHARS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/?%"
paths = st.text(alphabet=PATH_CHARS, max_size=60).map(lambda tail: "/" + tail)
codes = st.integers(100, 599)
ranges = st.tuples(codes, codes).map(sorted).map(tuple)


@given(paths)
def test_every_origin_form_path_is_taken_as_written(path: str) -> None:
    """A path of printable request-target characters is kept exactly."""
    assert parse_path(path) == path


@given(st.text(max_size=40))
def test_a_path_is_kept_only_when_it_cannot_break_the_request(text: str) -> None:
    """Anything parsed starts with / and holds no space, control character, quote or #."""
    try:
        path = parse_path(text)
    except ValueError:
        return
    assert path.startswith("/")
    assert all(ch in PATH_CHARS for ch in path)


@given(st.lists(st.one_of(codes.map(lambda c: (c, c)), ranges), min_size=1, max_size=6))
def test_status_lists_accept_exactly_their_codes_and_ranges(items: list[tuple[int, int]]) -> None:
    """A comma list of codes and ranges accepts a code exactly when one of them holds it."""
    text = ", ".join(f"{low}" if low == high else f"{low}-{high}" for low, high in items)
    check = HttpCheck("/", parse_statuses(text))
    for code in range(100, 600):
        assert check.accepts(code) == any(low <= code <= high for low, high in items)


@pytest.mark.parametrize("text", ["", "abc", "99", "600", "200-", "399-200", "2OO", "200;300"])
def test_bad_status_lists_are_refused_with_a_reason(text: str) -> None:
    """A status list that is empty or holds anything but codes and ranges is refused."""
    with pytest.raises(ValueError, match=r"."):
        parse_statuses(text)


@given(st.integers(1, 65535), paths, st.sampled_from(["http", "https"]))
def test_a_port_label_probes_that_port_with_its_protocol_and_path(
    port: int, path: str, scheme: str
) -> None:
    """dockping.http.PORT / dockping.https.PORT set that port's protocol and path, and only it."""
    plan = plan_of({f"dockping.{scheme}.{port}": path}, "img")
    assert plan.notes == ()
    assert plan.for_port(port) == (scheme, HttpCheck(path))
    assert plan.for_port(port % 65535 + 1) is None


@given(st.text(alphabet=string.printable, min_size=1, max_size=8))
def test_a_bad_port_suffix_is_explained_and_ignored(suffix: str) -> None:
    """A suffix that is not a TCP port (nor `status`) gives a note and no HTTP check."""
    if (suffix.isdigit() and 1 <= int(suffix) <= 65535) or suffix == "status":
        return
    plan = plan_of({f"dockping.http.{suffix}": "/"}, "img")
    assert plan.ports == {}
    assert plan.default is None
    assert any("is not a TCP port" in note for note in plan.notes)


def test_labels_override_the_first_matching_rule() -> None:
    """The first rule whose glob fits the image applies; labels override its path and codes."""
    rules = [
        HttpRule(image="nginx*", path="/nginx", status="200"),
        HttpRule(image="*", path="/any"),
    ]
    assert plan_of({}, "nginx:1.27", rules).for_port(80) == (
        "http",
        HttpCheck("/nginx", ((200, 200),)),
    )
    assert plan_of({}, "redis:7", rules).for_port(6379) == ("http", HttpCheck("/any"))
    labelled = plan_of(
        {
            "dockping.https": "/tls",
            "dockping.http.status": "200-299",
            "dockping.tls_verify": "true",
        },
        "nginx:1.27",
        rules,
    )
    assert labelled.for_port(443) == ("https", HttpCheck("/tls", ((200, 299),), verify=True))


def test_bad_label_values_are_explained_and_ignored() -> None:
    """A bad path, status list or tls_verify is named in the container's note and left out."""
    container = container_of(
        {
            "Id": "c1",
            "Config": {
                "Labels": {
                    "dockping.http": "no-slash",
                    "dockping.http.status": "ok",
                    "dockping.tls_verify": "maybe",
                },
                "ExposedPorts": {"80/tcp": {}},
            },
            "State": {"Running": True},
            "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "10.9.0.2"}}},
        }
    )
    assert [(t.port, t.protocol) for t in container.targets] == [(80, "tcp")]
    for label in ("dockping.http:", "dockping.http.status:", "dockping.tls_verify:"):
        assert label in container.note


def test_a_port_label_adds_its_port_to_the_targets() -> None:
    """dockping.https.8443 probes 8443 over TLS beside the exposed port's bare connect."""
    container = container_of(
        {
            "Id": "c1",
            "Config": {
                "Labels": {"dockping.https.8443": "/healthz"},
                "ExposedPorts": {"80/tcp": {}},
            },
            "State": {"Running": True, "Health": {"Status": "starting"}},
            "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "10.9.0.2"}}},
        }
    )
    assert [(t.port, t.protocol, t.http) for t in container.targets] == [
        (80, "tcp", None),
        (8443, "https", HttpCheck("/healthz")),
    ]
    assert container.health == "starting"


def test_settings_refuse_a_bad_rule(tmp_path: Path) -> None:
    """An [[agent.http]] rule with a bad path or status list fails at load, naming the key."""
    path = tmp_path / "settings.toml"
    path.write_text('[[agent.http]]\nimage = "nginx*"\npath = "healthz"\n')
    with pytest.raises(SettingsError, match=r"agent\.http.*path"):
        load(path, {})
    path.write_text('[[agent.http]]\nimage = "nginx*"\nstatus = "200-x"\n')
    with pytest.raises(SettingsError, match=r"agent\.http.*status"):
        load(path, {})
    path.write_text('[[agent.http]]\nimage = "nginx*"\npath = "/"\ntls = true\n')
    assert load(path, {}).agent.http == [HttpRule(image="nginx*", path="/", tls=True)]
