# The layer every NeMo Gym server image shares (gymctl build makes it once, then images/nemo_gym.Dockerfile per server):
#   Debian trixie (Python 3.13, which nemo-gym 0.7.0 needs) -> nemo-gym itself in /opt/nemo-gym -> gymctl's server
#   set in /opt/gymctl (gymctl itself comes with each server's layer: it changes more often than these). Built apart so
#   that the server images' builds send the engine only their own code and gymctl's, not these wheels (hundreds of MB). Every wheel was fetched on the host for CPython 3.13 (pip download): no index
#   at build time, nothing installed at start.
ARG BASE_IMAGE=gymctl/base:trixie

FROM ${BASE_IMAGE} AS nemo
COPY nemo-gym/wheels/ /tmp/wheels/
# nemo-gym 0.7.0 declares Requires-Python >=3.13.14; trixie has 3.13.5, on which it runs (NeMo Gym's own notes).
RUN python3 -m venv /opt/nemo-gym \
 && /opt/nemo-gym/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheels --ignore-requires-python -r /tmp/wheels/requirements.txt \
 && /opt/nemo-gym/bin/python -m pip uninstall --quiet --yes pip

FROM ${BASE_IMAGE} AS gymctl
COPY nemo-gym/gymctl-wheels/ /tmp/wheels/
RUN python3 -m venv /opt/gymctl \
 && /opt/gymctl/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheels -r /tmp/wheels/requirements.txt \
 && /opt/gymctl/bin/python -m pip uninstall --quiet --yes pip

FROM ${BASE_IMAGE}
RUN groupadd --gid 10001 gym && useradd --uid 10001 --gid gym --no-create-home --home-dir /app --shell /usr/sbin/nologin gym
COPY --from=nemo /opt/nemo-gym /opt/nemo-gym
COPY --from=gymctl /opt/gymctl /opt/gymctl
ENV PATH=/opt/gymctl/bin:$PATH \
    PYTHONPATH=/opt/gymctl/src \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    GYMCTL_SERVERS_DIR=/app/servers \
    GYMCTL_CONFIG_FILE=/etc/gymctl/config.yaml \
    GYMCTL_BIND_HOST=0.0.0.0 \
    GYMCTL_PORT=8000 \
    GYMCTL_INSTANCE=
WORKDIR /app/servers
CMD ["sh", "-c", "exec gymctl serve \"$GYMCTL_INSTANCE\""]
# Container liveness: the NeMo Gym server's own GET / (every NeMo Gym server answers it).
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import os,urllib.request as u; u.urlopen('http://127.0.0.1:%s/' % (os.environ.get('GYMCTL_PORT') or '8000'), timeout=2)"]
ARG SOURCE_HASH=unknown
LABEL io.gymctl.image=nemo-gym-runtime io.gymctl.source-hash=${SOURCE_HASH}
