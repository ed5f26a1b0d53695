import { defineConfig } from "vitest/config";

// Four suites with different costs: unit (no network, fast), integration (real servers on
// 127.0.0.1), e2e (many hosts in network namespaces), interop (Dragonfly's client). `npm test` runs the first two.
export default defineConfig({
  test: {
    projects: [
      { test: { name: "unit", include: ["test/unit/**/*.test.ts"], testTimeout: 30_000 } },
      {
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts"],
          testTimeout: 180_000,
          hookTimeout: 180_000,
          // Integration tests start real servers and large transfers; on 2 cores they run one
          // file at a time so that they do not starve each other into timeouts.
          fileParallelism: false,
        },
      },
      {
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          testTimeout: 900_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
      {
        // Dragonfly's own client against ours (issue 19): real binaries, large transfers.
        test: {
          name: "interop",
          include: ["test/interop/**/*.test.ts"],
          testTimeout: 600_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
