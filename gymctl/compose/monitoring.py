"""The monitoring profile of a stack (`--monitoring`): a Prometheus service that finds every instance through the head (pure)."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel

from gymctl.config.paths import shipped_dir
from gymctl.errors import GymctlError
from gymctl.server.metrics import monitoring_public as monitoring_public  # the setting is read in servers too

PROMETHEUS_SERVICE = "prometheus"
PROMETHEUS_CONFIG = "/etc/prometheus/prometheus.yml"
ALERTS_CONFIG = "/etc/prometheus/alerts.yml"
TOKEN_SECRET = "gymctl_auth_token"
TOKEN_FILE = f"/run/secrets/{TOKEN_SECRET}"
TOKEN_ENV = "GYMCTL_AUTH_TOKEN"
DEFAULT_PORT = 9090


class MonitoringSpec(BaseModel):
    """What the templates need for the Prometheus service and its two config files."""

    image: str
    host_ip: str
    host_port: int
    head_target: str  # host:port of the head as Prometheus reaches it
    share_network_of: str | None = None  # all-in-one: Prometheus runs in the gymctl container's network (127.0.0.1 is the deployment)
    token: bool = False  # auth on: the token reaches Prometheus as a secret file, never in its config
    scrape_interval_s: int = 5
    labels: dict[str, str] = {}
    prometheus_yaml: str = ""
    alerts_yaml: str = ""


def alert_rules(path: Path | None = None) -> str:
    """The shipped rules file (monitoring/alerts.yml) as text."""
    path = path or shipped_dir("monitoring") / "alerts.yml"
    if not path.is_file():
        raise GymctlError(f"the alert rules are missing ({path} is not a file); reinstall gymctl")
    return path.read_text()


def prometheus_config(spec: MonitoringSpec) -> str:
    """prometheus.yml: the head's http_sd endpoint as the one source of targets, the shipped rules, the token file when auth is on."""
    def auth() -> dict[str, object]:  # a fresh mapping each time: no YAML anchors in the rendered file
        return {"authorization": {"type": "Bearer", "credentials_file": TOKEN_FILE}} if spec.token else {}

    every = f"{spec.scrape_interval_s}s"
    config = {
        "global": {"scrape_interval": every, "evaluation_interval": every, "scrape_timeout": f"{max(1, spec.scrape_interval_s - 1)}s"},
        "rule_files": [ALERTS_CONFIG],
        "scrape_configs": [{
            "job_name": "gymctl",
            **auth(),
            "http_sd_configs": [{"url": f"http://{spec.head_target}/prometheus_targets", "refresh_interval": every, **auth()}],
        }],
    }
    return "# Rendered by gymctl (--monitoring): every target comes from the head's /prometheus_targets.\n" + yaml.safe_dump(config, sort_keys=False)


def monitoring_spec(*, image: str, host_ip: str, host_port: int, head_target: str, share_network_of: str | None, token: bool,
                    labels: dict[str, str]) -> MonitoringSpec:
    spec = MonitoringSpec(image=image, host_ip=host_ip, host_port=host_port, head_target=head_target, share_network_of=share_network_of,
                          token=token, labels=labels)
    spec.prometheus_yaml = prometheus_config(spec)
    spec.alerts_yaml = alert_rules()
    return spec
