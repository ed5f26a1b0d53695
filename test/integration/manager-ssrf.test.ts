// The SSRF dispatcher refuses at connect time: IP literals, names resolving to loopback, and
// redirects into refused addresses — all against real loopback servers.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { interceptors, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SsrfPolicy } from "../../src/common/ssrf.js";

describe("SsrfPolicy agent", () => {
  let server: Server;
  let port: number;
  let hits = 0;
  beforeAll(async () => {
    server = createServer((req, res) => {
      hits++;
      if (req.url === "/redirect-to-metadata") return res.writeHead(302, { location: "http://169.254.169.254/latest/meta-data/" }).end();
      if (req.url === "/redirect-to-loopback") return res.writeHead(302, { location: `http://localhost:${port}/ok` }).end();
      res.writeHead(200).end("ok");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it("refuses loopback by IP and by name before sending anything", async () => {
    const agent = new SsrfPolicy().agent();
    const before = hits;
    await expect(request(`http://127.0.0.1:${port}/ok`, { dispatcher: agent })).rejects.toMatchObject({ code: "ESSRF" });
    await expect(request(`http://localhost:${port}/ok`, { dispatcher: agent })).rejects.toMatchObject({ code: "ESSRF" });
    expect(hits).toBe(before);
    await agent.close();
  });

  it("connects when the address is allowlisted, and checks every redirect hop", async () => {
    const policy = new SsrfPolicy({ allowCidrs: ["127.0.0.1/32"] });
    const agent = policy.agent();
    const ok = await request(`http://127.0.0.1:${port}/ok`, { dispatcher: agent });
    expect(ok.statusCode).toBe(200);
    expect(await ok.body.text()).toBe("ok");
    const following = agent.compose(interceptors.redirect({ maxRedirections: 3 }));
    await expect(request(`http://127.0.0.1:${port}/redirect-to-metadata`, { dispatcher: following })).rejects.toMatchObject({ code: "ESSRF" });
    // localhost may resolve to ::1 first; only 127.0.0.1 is allowed, and the lookup picks it.
    const viaName = await request(`http://127.0.0.1:${port}/redirect-to-loopback`, { dispatcher: following });
    expect(viaName.statusCode).toBe(200);
    await viaName.body.dump();
    await agent.close();
  });
});
