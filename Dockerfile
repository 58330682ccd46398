# tidepool in a container: the binary plus the demo project (sql/, views/, configs).
# docker build -t tidepool .   (docker-compose.yml builds it for the demo)
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake perl make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --bin tidepool

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/tidepool /usr/local/bin/tidepool
WORKDIR /project
COPY tidepool.toml tidepool.docker.toml tidepool.cluster.toml ./
COPY sql ./sql
COPY views ./views
EXPOSE 5433 50051 8080
ENTRYPOINT ["tidepool"]
CMD ["--config", "tidepool.docker.toml", "serve"]
