"""Compose's interpolation rules, as the tests apply them where Compose is not installed;
where it is, each case is also checked against ``docker-compose config`` itself."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.compose_interpolate import InterpolationError, interpolate

ENV = {"SET": "x", "EMPTY": ""}
CASES = [
    ("${SET}", "x"), ("$SET", "x"), ("${UNSET}", ""), ("a$$b", "a$b"),
    ("${UNSET:-d}", "d"), ("${EMPTY:-d}", "d"), ("${EMPTY-d}", ""), ("${SET:-d}", "x"),
    ("${UNSET-d}", "d"), ("${SET:+alt}", "alt"), ("${EMPTY:+alt}", ""),
    ("${EMPTY+alt}", "alt"), ("127.0.0.1:${PORT:-4000}:80", "127.0.0.1:4000:80"),
]


@pytest.mark.parametrize("text, expected", CASES)
def test_each_rule(text, expected):
    assert interpolate({"k": [text]}, ENV) == {"k": [expected]}


def test_keys_are_left_alone_and_required_values_raise():
    assert interpolate({"${SET}": 1}, ENV) == {"${SET}": 1}
    with pytest.raises(InterpolationError, match="UNSET: give it"):
        interpolate("${UNSET:?give it}", ENV)
    with pytest.raises(InterpolationError):
        interpolate("${EMPTY:?}", ENV)
    assert interpolate("${EMPTY?}", ENV) == ""


@pytest.mark.process
def test_the_rules_agree_with_compose_itself(tmp_path):
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed: the rules are checked on their own")
    # Compose v1 (Debian's 1.29) has no ${VAR+other}; v2 does
    values = {f"v{i}": text for i, (text, _) in enumerate(CASES) if "+" not in text}
    compose = {"version": "3.8", "services": {"s": {"image": "i", "labels": values}}}
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump(compose))
    proc = subprocess.run(["docker-compose", "config"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin", **ENV})
    assert proc.returncode == 0, proc.stderr
    labels = yaml.safe_load(proc.stdout)["services"]["s"]["labels"]
    # `config` prints a Compose file again, so a literal dollar comes back escaped
    assert labels == {k: v.replace("$", "$$") for k, v in interpolate(values, ENV).items()}
