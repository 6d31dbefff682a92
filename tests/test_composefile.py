"""The user's Compose file as the harness runs it: pure functions, checked offline."""

from __future__ import annotations

import pytest

from loadtest.stack.docker.compose import file as cf

TEAM_FILE = {  # what `docker compose config` gives for a team's ordinary file
    "services": {
        "shop": {"build": {"context": "/src/shop"}, "image": "team/shop:1",
                 "ports": ["5000:5000/tcp"], "environment": {"REDIS_URL": "redis://cache:6379"},
                 "labels": {"traefik.http.routers.old.rule": "Host(`x`)", "team": "shop"},
                 "networks": {"back": None}},
        "cache": {"image": "redis:7-alpine", "networks": {"back": None},
                  "ports": ["6379:6379"]},
    },
    "networks": {"back": {}},
}


def test_the_port_comes_from_the_service_then_the_image_then_the_option():
    assert cf.scaled_service(TEAM_FILE, "shop").port == 5000
    assert cf.scaled_service(TEAM_FILE, "shop").port_source == "ports"
    bare = {"services": {"web": {"image": "x"}}}
    assert cf.scaled_service(bare, "web", image_ports=[8080, 9090]).port == 8080
    assert cf.scaled_service(bare, "web", app_port=7000).port_source == "--app-port"
    exposed = {"services": {"web": {"expose": ["3000"], "ports": ["80:8000"]}}}
    assert cf.scaled_service(exposed, "web").port == 3000
    long_form = {"services": {"web": {"ports": [{"target": 8000, "published": 4000,
                                                  "host_ip": "127.0.0.1"}]}}}
    assert cf.scaled_service(long_form, "web").port == 8000
    with pytest.raises(cf.ComposeFileError, match="--app-port"):
        cf.scaled_service(bare, "web")


@pytest.mark.parametrize("config,service,message", [
    (TEAM_FILE, "web", "service 'web' is not in the Compose file (it has: cache, shop)"),
    ({"services": {"web": {"container_name": "w", "ports": ["80"]}}}, "web", "container_name"),
])
def test_a_service_that_cannot_be_scaled_is_one_line(config, service, message):
    with pytest.raises(cf.ComposeFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cf.scaled_service(config, service)


def test_traefik_copy_scales_the_service_and_leaves_the_others_as_written():
    scaled = cf.scaled_service(TEAM_FILE, "shop")
    spec = cf.BalancerSpec("traefik", "traefik:v3.7", 4100, 8100, "/healthz", project="p1",
                           log_dir="/run/logs")
    out = cf.harness_config(TEAM_FILE, scaled, spec)
    shop = out["services"]["shop"]
    assert "ports" not in shop and scaled.removed_ports == ["5000:5000/tcp"]
    assert shop["labels"]["traefik.http.services.scalecheck.loadbalancer.server.port"] == "5000"
    assert shop["labels"]["traefik.http.services.scalecheck.loadbalancer.healthcheck.path"] \
        == "/healthz"
    assert shop["labels"]["team"] == "shop"  # theirs stay, their Traefik labels do not
    assert not any(k.startswith("traefik.http.routers.old") for k in shop["labels"])
    assert out["services"]["cache"] == TEAM_FILE["services"]["cache"]  # untouched, ports too
    lb = out["services"][cf.BALANCER_SERVICE]
    assert lb["ports"] == ["127.0.0.1:4100:80", "127.0.0.1:8100:8080"]
    assert lb["networks"] == ["back"]
    assert any("constraints=Label(`com.docker.compose.project`,`p1`)" in a for a in lb["command"])
    # The engine only through the read-only proxy, over a socket in a volume of theirs
    assert not any("docker.sock" in v for v in lb["volumes"])
    assert "--providers.docker.endpoint=unix:///scalecheck-docker-api/docker.sock" in \
        lb["command"]
    proxy = out["services"][cf.PROXY_SERVICE]
    assert proxy["network_mode"] == "none"  # no container on any network reaches it
    assert "/var/run/docker.sock:/var/run/docker.sock" in proxy["volumes"]
    assert set(proxy["volumes"]) & set(lb["volumes"]) == {
        "scalecheck-docker-api:/scalecheck-docker-api"}
    assert TEAM_FILE["services"]["shop"]["ports"] == ["5000:5000/tcp"]  # a copy, not theirs


def test_haproxy_copy_keeps_its_runtime_api_off_every_network():
    bare = {"services": {"web": {"image": "x", "ports": ["8000"]}}}
    scaled = cf.scaled_service(bare, "web")
    assert scaled.networks == ["default"]
    spec = cf.BalancerSpec("haproxy", "haproxy:2.6", 4100, 8100, None,
                           admin_dir="/tmp/private", haproxy_cfg="/run/stack/haproxy.cfg")
    out = cf.harness_config(bare, scaled, spec)
    lb = out["services"][cf.BALANCER_SERVICE]
    assert lb["ports"] == ["127.0.0.1:4100:80", "127.0.0.1:8100:8404"]  # no admin port
    assert "/tmp/private:/scalecheck/admin" in lb["volumes"] and lb["user"] == "0:0"
    assert "labels" not in out["services"]["web"]
    assert "default" in out["networks"]


def test_counter_location():
    assert cf.counter_location("redis:cache:visits") == ("redis", "cache", "visits")
    with pytest.raises(cf.ComposeFileError, match="redis:SERVICE:KEY"):
        cf.counter_location("cache:visits")
