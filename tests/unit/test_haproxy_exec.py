"""Ray's HAProxy configuration made loopback-safe (loopml.serving.haproxy_exec), checked by the
real HAProxy binary (``haproxy -c``) through the program Ray runs as its binary."""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

from loopml.serving import haproxy_exec, ingress
from loopml.settings import Settings

# As Ray Serve 2.60's template renders it for one endpoint (bench.wine) with one replica.
RAY_CONFIG = """\
global
    log 127.0.0.1:514 local0 info
    stats socket {sock} mode 666 level admin expose-fd listeners
    stats timeout 30s
    maxconn 4096
    nbthread 4
    hard-stop-after 120s
defaults
    mode http
    option log-health-checks
    timeout connect 5s
    timeout client 3600s
    timeout http-keep-alive 90s
    log global
    option httplog
    option abortonclose
    option redispatch 1
    retry-on conn-failure
    option http-no-delay
    errorfile 502 {dir}/500.http
    errorfile 503 {dir}/500.http
    errorfile 504 {dir}/500.http
    balance leastconn
frontend prometheus
    bind :9101
    mode http
    http-request use-service prometheus-exporter if {{ path /metrics }}
    no log
frontend http_frontend
    bind 127.0.0.1:{port}
    log global
    log-format-sd "%{{+Q,+E}}o [serve@1 app=%[var(txn.serve_app)] status=%ST]"
    acl healthcheck path -i /-/healthz
    http-request set-log-level debug if healthcheck
    acl backend_http-bench.wine_server_up nbsrv(http-bench.wine) ge 1
    http-request return status 200 content-type text/plain string "success" if healthcheck backend_http-bench.wine_server_up
    http-request return status 503 content-type text/plain string "Service Unavailable" if healthcheck
    acl is_http-bench.wine path_beg /bench/wine/
    acl is_http-bench.wine path /bench/wine
    use_backend http-bench.wine if is_http-bench.wine
    default_backend default_backend
backend default_backend
    http-request return status 404 content-type text/plain lf-string "Path '%[path]' not found. Ping http://.../-/routes for available routes."
backend http-bench.wine
    log global
    http-reuse always
    option httpchk GET /-/healthz
    http-check expect status 200
    default-server fastinter 250ms downinter 250ms fall 2 rise 2 inter 5s check
    server SERVE_REPLICA_bench.wine-model-1 127.0.0.1:30000 check observe layer4 error-limit 3 on-error mark-down
    server SERVE_REPLICA_bench.wine-model-2 127.0.0.1:30001 check observe layer4 error-limit 3 on-error mark-down
    server SERVE_PROXY_ACTOR-fallback-x 127.0.0.1:8500 check backup
listen stats
  bind *:8404
  stats enable
  stats uri /stats
  stats refresh 1s
"""
OPTIONS = {"maxconn": 4, "maxqueue": 28, "timeout_server_s": 30.0, "retry_after_s": 1}


@pytest.fixture
def ray_config(tmp_path):
    path = tmp_path / "node" / "haproxy.cfg"
    path.parent.mkdir()
    path.write_text(RAY_CONFIG.format(sock=tmp_path / "admin.sock", dir=path.parent, port=31999))
    (path.parent / "500.http").write_text("HTTP/1.1 500 Internal Server Error\r\n\r\n")
    return path


def test_only_the_serve_frontend_listens_and_the_socket_is_private(ray_config):
    config, _ = haproxy_exec.loopback_safe(ray_config.read_text(), OPTIONS, str(ray_config.parent))
    binds = [line.strip() for line in config.splitlines() if line.strip().startswith("bind ")]
    assert binds == ["bind 127.0.0.1:31999"]
    assert "frontend prometheus" not in config and "listen stats" not in config
    assert "mode 600 level admin" in config and "mode 666" not in config
    assert not [line for line in config.splitlines() if line.strip().startswith(("log ", "option httplog"))]


def test_replicas_are_bounded_and_refusals_are_json_naming_the_endpoint(ray_config):
    config, files = haproxy_exec.loopback_safe(ray_config.read_text(), OPTIONS, str(ray_config.parent))
    servers = [line.strip() for line in config.splitlines() if line.strip().startswith("server ")]
    assert servers[0].startswith("server SERVE_REPLICA_bench.wine-model-1 127.0.0.1:30000 maxconn 4 maxqueue 32 check")  # 28, slack 4
    assert "maxconn" not in servers[2]  # the backup (Serve's own proxy) keeps its own bounds
    assert "    timeout server 30000ms" in config
    assert "    http-request deny deny_status 503 if { queue() ge 64 }" in config  # 32 per replica
    # once the queue overflowed, for 10 s (the defaults), two requests in flight per replica
    assert "    http-request sc-inc-gpc0(2) if { queue() ge 64 }" in config
    assert "    http-request deny deny_status 503 if { sc2_gpc0_rate gt 0 } { be_conn() gt 4 }" in config
    assert "    stick-table type integer size 1 expire 10000ms store gpc0_rate(10000ms)" in config
    backend = config[config.index("backend http-bench.wine"):]
    for line in haproxy_exec.DIRECT_CALL_LINES:  # HAProxy times requests, over what callers send
        assert line in backend
    refusal = files[str(ray_config.parent / "http-bench.wine.503.http")]
    head, body = refusal.split(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in head
    assert b"content-type: application/json" in head and f"content-length: {len(body)}".encode() in head
    assert json.loads(body) == {"message": "endpoint /bench/wine is at its limit of 64 requests in flight: "
                                           "retry after 1 s", "reason": "overloaded"}
    timeout = json.loads(files[str(ray_config.parent / "default.504.http")].split(b"\r\n\r\n")[1])
    assert timeout["reason"] == "timeout" and "30000ms" in timeout["message"]
    assert "500.http" not in config


def test_the_real_haproxy_accepts_the_rewritten_config_through_the_installed_program(ray_config, tmp_path):
    program = ingress.install_exec(tmp_path / "temp")
    assert program.read_text().startswith("#!") and "-IS\n" in program.read_text().splitlines()[0] + "\n"
    assert stat.S_IMODE(program.stat().st_mode) == 0o700
    options = {**OPTIONS, "binary": ingress.haproxy_binary({}), "private_dirs": [str(ray_config.parent)]}
    env = {**os.environ, haproxy_exec.OPTIONS_ENV: json.dumps(options)}
    checked = subprocess.run([str(program), "-c", "-f", str(ray_config)], env=env, capture_output=True, text=True,
                             timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "listen stats" not in ray_config.read_text()  # rewritten in place: Ray looks for its own -f path
    assert stat.S_IMODE(ray_config.stat().st_mode) == 0o600
    assert stat.S_IMODE(ray_config.parent.stat().st_mode) == 0o700
    not_found = next(line for line in ray_config.read_text().splitlines() if "status 404" in line)
    assert "application/json" in not_found


def test_a_broken_config_is_refused_by_haproxy_not_hidden(ray_config, tmp_path):
    ray_config.write_text(ray_config.read_text().replace("balance leastconn", "balance no-such-algorithm"))
    program = ingress.install_exec(tmp_path / "temp")
    options = {**OPTIONS, "binary": ingress.haproxy_binary({})}
    checked = subprocess.run([str(program), "-c", "-f", str(ray_config)], capture_output=True, text=True, timeout=60,
                             env={**os.environ, haproxy_exec.OPTIONS_ENV: json.dumps(options)})
    assert checked.returncode != 0 and "Fatal errors" in checked.stdout + checked.stderr


def test_ingress_env_per_setting(tmp_path):
    proxy = Settings(data_dir=tmp_path / "a", serve_ingress="proxy")
    assert ingress.ingress_env(proxy, tmp_path / "t1", 25000) == {}
    settings = Settings(data_dir=tmp_path / "b", serve_max_inflight=10, serve_request_timeout_s=5)
    env = ingress.ingress_env(settings, tmp_path / "t2", 25000, environ={})
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1" and env["RAY_SERVE_HAPROXY_METRICS_ENABLED"] == "0"
    assert env["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"].startswith(str(tmp_path / "b"))  # in the data dir
    assert env["RAY_SERVE_HAPROXY_SOCKET_PATH"].startswith(str(tmp_path / "t2"))
    assert os.access(env[ingress.BINARY_ENV], os.X_OK)
    assert (env["RAY_SERVE_FALLBACK_PROXY_HTTP_PORT"], env["RAY_SERVE_FALLBACK_PROXY_GRPC_PORT"]) == ("25000", "25001")
    options = json.loads(env[haproxy_exec.OPTIONS_ENV])
    assert (options["maxconn"], options["maxqueue"], options["timeout_server_s"]) == (4, 6, 5)
    assert stat.S_IMODE((tmp_path / "b" / ingress.CONFIG_DIR).stat().st_mode) == 0o700


def test_a_worker_node_listens_on_its_own_address_with_its_files_in_its_temp_dir(ray_config, tmp_path):
    config, _ = haproxy_exec.loopback_safe(ray_config.read_text(), {**OPTIONS, "bind_host": "127.0.0.2"},
                                           str(ray_config.parent))
    assert [line.strip() for line in config.splitlines() if line.strip().startswith("bind ")] == [
        "bind 127.0.0.2:31999"]
    assert "server SERVE_REPLICA_bench.wine-model-1 127.0.0.1:30000" in config  # replicas: Serve's targets

    settings = Settings(data_dir=tmp_path / "home")
    env = ingress.ingress_env(settings, tmp_path / "w", 25000, environ={}, worker_ip="127.0.0.2")
    assert env["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"].startswith(str(tmp_path / "w"))  # no data dir there
    assert json.loads(env[haproxy_exec.OPTIONS_ENV])["bind_host"] == "127.0.0.2"
    wildcard = Settings(data_dir=tmp_path / "home", serve_host="0.0.0.0")
    env = ingress.ingress_env(wildcard, tmp_path / "w2", 25000, environ={}, worker_ip="10.0.0.7")
    assert "bind_host" not in json.loads(env[haproxy_exec.OPTIONS_ENV])
    head = ingress.ingress_env(settings, tmp_path / "h", 25000, environ={})
    assert "bind_host" not in json.loads(head[haproxy_exec.OPTIONS_ENV])
