# One image for the operator and the agent. Build: docker build -t lifeline:dev .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
# Dump and restore tools run in their own images; the agent needs none of them.
RUN groupadd --system --gid 65532 lifeline \
 && useradd --system --uid 65532 --gid lifeline --home-dir /home/lifeline --create-home lifeline
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 65532:65532
ENV PYTHONUNBUFFERED=1 LIFELINE_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["lifeline"]
CMD ["operator"]
