# syntax=docker/dockerfile:1
# Build stage: Rust toolchain + Node build the addon (release), the TypeScript and the web console.
FROM node:20-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates build-essential \
 && curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain 1.95.0 \
 && rm -rf /var/lib/apt/lists/*
ENV PATH=/root/.cargo/bin:$PATH
WORKDIR /src
COPY package.json package-lock.json ./
COPY native ./native
COPY proto ./proto
COPY scripts ./scripts
COPY patches ./patches
COPY src ./src
COPY console ./console
COPY bin ./bin
COPY tsconfig.json tsconfig.build.json ./
RUN npm ci --no-audit --no-fund && npm prune --omit=dev

# Runtime stage: Node only, the built addon and JS, a non-root user.
FROM node:20-bookworm-slim
RUN groupadd --system damselfly && useradd --system --gid damselfly --home /var/lib/damselfly --create-home damselfly
WORKDIR /opt/damselfly
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/bin ./bin
COPY --from=build /src/native/binding/index.cjs /src/native/binding/*.node ./native/binding/
ENV PATH=/opt/damselfly/bin:$PATH NODE_ENV=production
USER damselfly
VOLUME ["/var/lib/damselfly"]
# 4000 upload gRPC, 4001 proxy, 4002 metrics, 4003 health, 4005 piece TCP, 4006/udp piece QUIC, 8002 scheduler, 8080 manager REST, 65003 manager gRPC
EXPOSE 4000 4001 4002 4003 4005 4006/udp 8002 8080 65003
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "bin/damselfly.js", "doctor", "--data-dir", "/var/lib/damselfly"]
ENTRYPOINT ["node", "bin/damselfly.js"]
CMD ["doctor", "--data-dir", "/var/lib/damselfly"]
