# One recipe for every image of a NeMo Gym server, FROM the shared runtime (images/nemo_gym_runtime.Dockerfile):
#   gymctl (which runs `gymctl serve`), ONE server's own requirements beyond nemo-gym (wheels fetched on the host for Python 3.13), its code, and its
#   NeMo Gym venv at <dir>/.venv as NeMo Gym's convention has it (the runtime's /opt/nemo-gym).
# The container runs `gymctl serve INSTANCE`: the server's own app.py on that interpreter, registered with the head
# by gymctl on its behalf. Config and secrets arrive at run time; nothing is baked in, nothing installed at start.
ARG RUNTIME_IMAGE=gymctl/nemo-gym-runtime:latest
FROM ${RUNTIME_IMAGE}
COPY gymctl/ /opt/gymctl/src/gymctl/
COPY bin/gymctl /usr/local/bin/gymctl
RUN python3 -m compileall -q /opt/gymctl/src
ARG SERVER_DIR
COPY units/${SERVER_DIR}/ /tmp/unit/
RUN if [ -s /tmp/unit/reqs/requirements.txt ]; then \
      /opt/nemo-gym/bin/python -m ensurepip --default-pip >/dev/null \
      && /opt/nemo-gym/bin/python -m pip install --no-cache-dir --no-index --find-links /tmp/unit/reqs --ignore-requires-python -r /tmp/unit/reqs/requirements.txt \
      && /opt/nemo-gym/bin/python -m pip uninstall --quiet --yes pip; \
    fi \
 && cp -a /tmp/unit/servers/. /app/servers/ && rm -rf /tmp/unit \
 && ln -s /opt/nemo-gym /app/servers/${SERVER_DIR}/.venv && /opt/nemo-gym/bin/python -m compileall -q /app/servers
ARG SOURCE_HASH=unknown
LABEL io.gymctl.image=${SERVER_DIR} io.gymctl.server-dir=${SERVER_DIR} io.gymctl.source-hash=${SOURCE_HASH} io.gymctl.runtime=nemo_gym
USER gym
