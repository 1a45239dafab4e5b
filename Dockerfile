# pipedemo as an image, for the compose file's `scale` profile and for Kubernetes
# (docs/scale-out.md): `docker build -t pipedemo .`
FROM rust:1-bookworm AS build
# librdkafka and OpenSSL are built from source (the crate's vendored features): a compiler,
# make and perl are all they need, and the rust image has them.
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin pipedemo

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/pipedemo /usr/local/bin/pipedemo
# Metrics, results and log files go here; mount a volume to keep them.
WORKDIR /data
ENTRYPOINT ["pipedemo"]
