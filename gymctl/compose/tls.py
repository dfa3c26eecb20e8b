"""`gymctl up --tls`: an nginx reverse proxy in front of everything a stack publishes (pure: the proxy service and its config).

Every port a service published moves to the proxy, which answers HTTPS only there and forwards plain HTTP inside the
stack's private network. The certificate and key reach the proxy as GYMCTL_TLS_CERT / GYMCTL_TLS_KEY (PEM text, passed
by name from `up`'s environment, never in the file); its entry writes them to its tmpfs (mode 0600) before nginx starts.
"""

from __future__ import annotations

from gymctl.compose.model import LABEL_INSTANCE, LABEL_PROJECT, HealthCheck, Port, Service

PROXY_SERVICE = "tls-proxy"
HEALTH_PORT = 8081  # plain HTTP on the proxy's loopback only: its container healthcheck
FIRST_PORT = 8443  # the proxy's listening ports inside its container (unprivileged: nginx runs as www-data)
CERT_ENV = "GYMCTL_TLS_CERT"
KEY_ENV = "GYMCTL_TLS_KEY"
CONF_ENV = "GYMCTL_NGINX_CONF"
DIR = "/tmp/nginx"
ENTRY = (
    f'if [ -z "${CERT_ENV}" ] || [ -z "${KEY_ENV}" ]; then echo "tls-proxy: {CERT_ENV} and {KEY_ENV} are not set: start the stack '
    f'with gymctl up --tls (or export both, PEM text, before docker compose up)" >&2; exit 2; fi; '
    f'umask 077 && mkdir -p {DIR} && printf "%s\\n" "${CERT_ENV}" > {DIR}/cert.pem && printf "%s\\n" "${KEY_ENV}" > {DIR}/key.pem '
    f'&& printf "%s\\n" "${CONF_ENV}" > {DIR}/nginx.conf && unset {KEY_ENV} && exec nginx -e stderr -c {DIR}/nginx.conf'
)


def nginx_conf(routes: list[tuple[int, str]]) -> str:
    """nginx.conf for (listen port, upstream service:port) pairs: TLS on each, the upstream resolved by Docker's DNS per request
    (a restarted container's new address is found), no body limit or buffering of its own (the servers answer 413 themselves).

    An upstream that cannot be reached (a container restarting: refused, or its name not resolved yet) or that drops the
    connection gets the client's connection closed with no answer (nginx's 444), not nginx's own 502 page: a client then
    sees what it sees without the proxy, a connection lost before any reply, and gymctl's clients send the request again
    (the collector for up to 15 s), so an agent restarted by its policy loses no rollout behind the proxy either. The
    servers' own 502/504 answers are passed through unchanged (proxy_intercept_errors is off)."""
    servers = "".join(
        f"  server {{\n    listen {port} ssl;\n    set $upstream {upstream};\n"
        "    location / {\n      proxy_pass http://$upstream;\n      proxy_set_header Host $http_host;\n"
        '      proxy_set_header Connection "";\n      proxy_set_header X-Forwarded-Proto https;\n'
        "      error_page 502 504 = @unreachable;\n    }\n    location @unreachable {\n      return 444;\n    }\n  }\n"
        for port, upstream in routes
    )
    return (
        "# Rendered by gymctl (--tls): HTTPS on every published port, plain HTTP inside the stack's network.\n"
        f"daemon off;\nworker_processes 1;\nworker_rlimit_nofile 16384;\npid {DIR}/nginx.pid;\nerror_log stderr warn;\n"
        "events {\n  worker_connections 8192;\n}\n"
        "http {\n  access_log off;\n"
        f"  client_body_temp_path {DIR}/body;\n  proxy_temp_path {DIR}/proxy;\n  fastcgi_temp_path {DIR}/fastcgi;\n"
        f"  uwsgi_temp_path {DIR}/uwsgi;\n  scgi_temp_path {DIR}/scgi;\n"
        "  resolver 127.0.0.11 valid=2s ipv6=off;\n  client_max_body_size 0;\n  client_header_timeout 30s;\n  client_body_timeout 30s;\n"
        "  proxy_http_version 1.1;\n  proxy_request_buffering off;\n  proxy_buffering off;\n"
        "  proxy_read_timeout 3600s;\n  proxy_send_timeout 3600s;\n"
        f"  ssl_certificate {DIR}/cert.pem;\n  ssl_certificate_key {DIR}/key.pem;\n  ssl_protocols TLSv1.2 TLSv1.3;\n"
        "  ssl_session_cache shared:tls:1m;\n"
        f"  server {{\n    listen 127.0.0.1:{HEALTH_PORT};\n    location = /health {{\n      return 200 \"ok\\n\";\n    }}\n  }}\n"
        f"{servers}}}\n"
    )


def put_behind_proxy(services: list[Service], *, project: str, image: str) -> Service:
    """Move every published port of `services` to a new proxy service (returned); published URLs become https://."""
    routes: list[tuple[int, str]] = []
    published: list[Port] = []
    for s in services:
        for p in s.ports:
            listen = FIRST_PORT + len(routes)
            routes.append((listen, f"{s.name}:{p.container_port}"))
            published.append(Port(host_ip=p.host_ip, host_port=p.host_port, container_port=listen))
        s.ports = []
        if s.environment.get("GYMCTL_HOST_URL", "").startswith("http://"):
            s.environment["GYMCTL_HOST_URL"] = "https://" + s.environment["GYMCTL_HOST_URL"][len("http://"):]
    return Service(
        name=PROXY_SERVICE, instance=PROXY_SERVICE, image=image, command=["sh", "-c", ENTRY],
        environment={CONF_ENV: nginx_conf(routes)}, pass_env=[CERT_ENV, KEY_ENV], ports=published,
        healthcheck=HealthCheck(path="/health", port=HEALTH_PORT, start_period_s=30),
        labels={LABEL_PROJECT: project, LABEL_INSTANCE: PROXY_SERVICE},
    )
