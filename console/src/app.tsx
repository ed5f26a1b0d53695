// The console's shell: sign-in until there is a session, then the navigation, who is signed
// in, and the page for the current path.
import { useEffect, useState } from "preact/hooks";
import { api } from "./api.js";
import { ErrorNote, Loading } from "./components/notes.js";
import { useLoad } from "./hooks.js";
import { loadMe, MeContext, type Me } from "./me.js";
import { Audits } from "./pages/audits.js";
import { ClusterDetail } from "./pages/cluster.js";
import { Commands } from "./pages/commands.js";
import { Forbidden } from "./pages/forbidden.js";
import { JobDetail } from "./pages/job.js";
import { Jobs } from "./pages/jobs.js";
import { NotFound } from "./pages/not-found.js";
import { Overview } from "./pages/overview.js";
import { SignIn } from "./pages/signin.js";
import { Tasks } from "./pages/tasks.js";
import { Tenants } from "./pages/tenants.js";
import { Tokens } from "./pages/tokens.js";
import { Users } from "./pages/users.js";
import { WebhookDetail, Webhooks } from "./pages/webhooks.js";
import { Link, localPath, matchRoute, navigate, useLocation } from "./router.js";
import { currentToken, onSessionChange, setSession } from "./session.js";

const NAV: Array<[string, string]> = [
  ["/", "Overview"],
  ["/jobs", "Jobs"],
  ["/tasks", "Tasks"],
  ["/users", "Users & roles"],
  ["/tokens", "Access tokens"],
  ["/webhooks", "Webhooks"],
  // Root only (the manager refuses others); not offered to other roles.
  ["/tenants", "Tenants"],
  ["/audits", "Audit log"],
  ["/commands", "Commands"],
];

function Page({ path }: { path: string }) {
  if (path === "/") return <Overview />;
  if (path === "/jobs") return <Jobs />;
  const job = matchRoute("/jobs/:id", path);
  if (job && /^\d+$/.test(job.id ?? "")) return <JobDetail id={Number(job.id)} />;
  const cluster = matchRoute("/clusters/:id", path);
  if (cluster && /^\d+$/.test(cluster.id ?? "")) return <ClusterDetail id={Number(cluster.id)} />;
  if (path === "/tasks") return <Tasks />;
  if (path === "/users") return <Users />;
  if (path === "/tokens") return <Tokens />;
  if (path === "/tenants") return <Tenants />;
  if (path === "/audits") return <Audits />;
  if (path === "/webhooks") return <Webhooks />;
  const webhook = matchRoute("/webhooks/:id", path);
  if (webhook && /^\d+$/.test(webhook.id ?? "")) return <WebhookDetail id={Number(webhook.id)} />;
  if (path === "/commands") return <Commands />;
  if (path === "/403") return <Forbidden />;
  return <NotFound path={path} />;
}

function isCurrent(href: string, path: string): boolean {
  return href === "/" ? path === "/" : path === href || path.startsWith(`${href}/`);
}

function Shell({ me, path }: { me: Me; path: string }) {
  const signOut = async () => {
    // Revokes this token on the manager; forgotten here whatever the answer.
    await api("POST", "/api/v1/users/signout").catch(() => undefined);
    setSession(null);
    navigate("/signin", { replace: true });
  };
  return (
    <MeContext.Provider value={me}>
      <header class="top">
        <Link href="/" class="brand">
          <img src="/favicon.svg" alt="" width={22} height={22} /> Damselfly
        </Link>
        <nav aria-label="console">
          {NAV.filter(([href]) => href !== "/tenants" || me.roles.includes("root")).map(([href, label]) => (
            <Link key={href} href={href} class={isCurrent(href, path) ? "current" : undefined} aria-current={isCurrent(href, path) ? "page" : undefined}>
              {label}
            </Link>
          ))}
        </nav>
        <div class="me">
          <span id="me-name">{me.user.name}</span> <span class="hint">{me.roles.join(", ")}</span>
          <button type="button" onClick={() => void signOut()}>
            Sign out
          </button>
        </div>
      </header>
      <main class="page">
        <Page path={path} />
      </main>
    </MeContext.Provider>
  );
}

function SignedIn({ token, path }: { token: string; path: string }) {
  const me = useLoad(() => loadMe(token), [token]);
  if (me.data) return <Shell me={me.data} path={path} />;
  return <main class="page">{me.error ? <ErrorNote error={`Could not load your account: ${me.error}`} /> : <Loading />}</main>;
}

export function App() {
  const [token, setToken] = useState(currentToken);
  const loc = useLocation();
  useEffect(() => onSessionChange(() => setToken(currentToken())), []);

  useEffect(() => {
    // Signed out on a page: sign-in, coming back here afterwards. Signed in on /signin: home.
    if (!token && loc.path !== "/signin") navigate(`/signin?next=${encodeURIComponent(loc.path + window.location.search)}`, { replace: true });
    if (token && loc.path === "/signin") navigate(localPath(loc.query.get("next")), { replace: true });
  }, [token, loc.path]);

  if (!token) return <SignIn next={loc.query.get("next")} />;
  if (loc.path === "/signin") return null;
  return <SignedIn token={token} path={loc.path} />;
}
