"""Model names and aliases as one table: what is accepted, and the reason given for every refusal."""

from __future__ import annotations

import pytest

from loopml.errors import InvalidInput
from loopml.registry.names import check_alias, registered_name, short_name

PROJECT = "proj"

# registry/names.py matches with `re.match` and a `$` anchor, and `$` also matches before a
# trailing newline: "iris\n" and "champion\n" pass. Fix: `re.fullmatch` (or `\Z`).


@pytest.mark.parametrize(
    "name, short",
    [
        pytest.param("iris", "iris", id="plain"),
        pytest.param("Iris_v2-final", "Iris_v2-final", id="letters-digits-dash-underscore"),
        pytest.param("7up", "7up", id="starts-with-digit"),
        pytest.param("x" * 100, "x" * 100, id="100-characters"),
        pytest.param("proj.iris", "iris", id="own-project-prefix"),
    ],
)
def test_valid_names(name, short):
    assert short_name(PROJECT, name) == short
    assert registered_name(PROJECT, name) == f"{PROJECT}.{short}"


@pytest.mark.parametrize(
    "name, reason",
    [
        pytest.param("", "it is empty", id="empty"),
        pytest.param("proj.", "it is empty", id="prefix-only"),
        pytest.param("a/b", "path separator", id="slash"),
        pytest.param("/iris", "path separator", id="leading-slash"),
        pytest.param("a\\b", "path separator", id="backslash"),
        pytest.param("..", "'..'", id="dotdot"),
        pytest.param("../x", "path separator", id="dotdot-slash"),
        pytest.param("..\\x", "path separator", id="dotdot-backslash"),
        pytest.param("..%2fx", "'..'", id="dotdot-encoded-slash"),
        pytest.param("proj..iris", "'..'", id="double-dot-after-prefix"),
        pytest.param("a b", "whitespace", id="space"),
        pytest.param(" iris", "whitespace", id="leading-space"),
        pytest.param("a\tb", "whitespace", id="tab"),
        pytest.param("a\nb", "whitespace", id="newline"),
        pytest.param("iris\n", "whitespace", id="trailing-newline"),
        pytest.param("a\x00b", "control character", id="nul"),
        pytest.param("bad\x01name", "control character", id="control-char"),
        pytest.param("a\x7fb", "control character", id="del"),
        pytest.param("x" * 101, "longer than 100 characters", id="too-long"),
        pytest.param("-iris", "starting with a letter or digit", id="leading-dash"),
        pytest.param("iris%2f", "use letters, digits", id="percent"),
        pytest.param("proj.a.b", "use letters, digits", id="dot-inside-name"),
    ],
)
def test_invalid_names_are_refused_with_the_reason(name, reason):
    for check in (short_name, registered_name):
        with pytest.raises(InvalidInput, match="invalid model name") as refused:
            check(PROJECT, name)
        assert reason in refused.value.message
        assert refused.value.details == {"field": "name"}


@pytest.mark.parametrize(
    "name, prefix",
    [
        pytest.param("other.iris", "other", id="another-project"),
        pytest.param("proj2.iris", "proj2", id="project-with-same-start"),
        pytest.param("pro.iris", "pro", id="prefix-of-the-project"),
        pytest.param(".iris", "", id="empty-prefix"),
    ],
)
def test_another_projects_prefix_is_refused_naming_both_projects(name, prefix):
    with pytest.raises(InvalidInput) as refused:
        short_name(PROJECT, name)
    message = refused.value.message
    assert f"belongs to project {prefix!r}, not {PROJECT!r}" in message
    assert f"'{PROJECT}.<name>'" in message


@pytest.mark.parametrize(
    "alias, valid",
    [
        pytest.param("champion", True, id="champion"),
        pytest.param("challenger", True, id="challenger"),
        pytest.param("staging-2_b", True, id="digits-dash-underscore"),
        pytest.param("v", True, id="just-v"),
        pytest.param("v3a", True, id="v-number-letter"),
        pytest.param("latest", False, id="latest-reserved"),
        pytest.param("v3", False, id="v-number-reserved"),
        pytest.param("v10", False, id="v-numbers-reserved"),
        pytest.param("Champion", False, id="uppercase"),
        pytest.param("", False, id="empty"),
        pytest.param("3rd", False, id="starts-with-digit"),
        pytest.param("a/b", False, id="slash"),
        pytest.param("..", False, id="dotdot"),
        pytest.param("a b", False, id="space"),
        pytest.param("champion\n", False, id="trailing-newline"),
        pytest.param("x" * 65, False, id="too-long"),
    ],
)
def test_aliases(alias, valid):
    if valid:
        assert check_alias(alias) == alias
        return
    with pytest.raises(InvalidInput, match="invalid alias") as refused:
        check_alias(alias)
    assert "'latest' and 'v<number>' are reserved" in refused.value.message
    assert refused.value.details == {"field": "alias"}
